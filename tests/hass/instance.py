"""A real Home Assistant core for the tests: its own venv, a fresh config dir, a loopback port.

``./dev test`` builds the venv (``hass_venv`` in ./dev) and passes its path in
``TINYOTA_HASS_VENV``. This module starts ``hass`` from it, onboards a user over the REST API the
frontend uses, adds the MQTT integration through its config flow, and gives the tests REST and
websocket access as that user. Every wait is bounded; Home Assistant's log is kept so a test can
assert what it says.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, wait_until

CLIENT_ID = "http://127.0.0.1/"  # the onboarding API wants an IndieAuth client id: any URL
USER = "tester"
PASSWORD = "tester-password-1"
START_TIMEOUT = 240.0  # a cold start compiles the frontend's translations and more on 2 busy cores


def venv() -> Path:
    """The HA venv ./dev built; a missing one fails loudly with the fix, never skips."""
    raw = os.environ.get("TINYOTA_HASS_VENV")
    if not raw:
        pytest.fail("TINYOTA_HASS_VENV is not set: run the tests through `./dev test`, which builds Home "
                    "Assistant's venv (or build it with `./dev hass-venv` and export the path it prints)")
    path = Path(raw)
    if not (path / "bin" / "hass").exists():
        pytest.fail(f"no Home Assistant in {path}: `./dev hass-venv` builds it")
    return path


class HassError(AssertionError):
    pass


@dataclass
class StateChange:
    at: float  # time.monotonic() when the test saw it
    entity_id: str
    state: str | None  # None: the entity was removed
    attributes: dict[str, Any]


class HomeAssistant:
    def __init__(self, config_dir: Path, mqtt_port: int) -> None:
        self.venv = venv()
        self.dir = config_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.mqtt_port = mqtt_port
        self.proc: subprocess.Popen[bytes] | None = None
        self.token: str | None = None
        self.refresh_token: str | None = None
        self.log_path = self.dir / "home-assistant.log"
        self.output_path = self.dir / "hass-output.log"
        (self.dir / "configuration.yaml").write_text(
            "homeassistant:\n"
            "  name: TinyOTA test home\n"
            "  unit_system: metric\n"
            "  time_zone: UTC\n"
            "  latitude: 0\n"
            "  longitude: 0\n"
            "  elevation: 0\n"
            "  country: DE\n"
            "  currency: EUR\n"
            "http:\n"
            "  server_host: 127.0.0.1\n"
            f"  server_port: {self.port}\n"
            "api:\n"
            "websocket_api:\n"
            "config:\n"
            "frontend:\n"
            "logger:\n"
            "  default: warning\n")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- the process -----------------------------------------------------------------------------

    def start(self) -> HomeAssistant:
        out = self.output_path.open("ab")
        # --skip-pip: ./dev installed every requirement beforehand, so nothing downloads mid-test.
        self.proc = subprocess.Popen(
            [str(self.venv / "bin" / "hass"), "--config", str(self.dir), "--skip-pip",
             "--log-file", str(self.log_path)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise HassError(f"hass exited with {self.proc.returncode}:\n{self.output_tail()}")
            try:
                # HA opens its HTTP port once its integrations are set up: any answer means ready.
                with urllib.request.urlopen(f"{self.url}/api/", timeout=2):
                    return True
            except urllib.error.HTTPError:
                return True  # 401: up, and wants a token
            except OSError:
                return False

        wait_until(up, START_TIMEOUT, "Home Assistant's HTTP API")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def output_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.output_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no output)"

    def log_text(self) -> str:
        """Everything Home Assistant logged in this config dir, across restarts.

        Its console output, appended to one file by every start: the log file proper keeps only
        the previous run's copy.
        """
        return self.output_path.read_text(errors="replace") if self.output_path.exists() else ""

    # -- REST ------------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, *, form: dict[str, str] | None = None,
                auth: bool = True, expect: int | None = 200) -> Any:
        headers = {}
        data = None
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if auth:
            assert self.token, "not onboarded yet"
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        if expect is not None and status != expect:
            raise HassError(f"{method} {path}: {status} {raw[:500]!r}")
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return raw.decode(errors="replace")

    def onboard(self) -> None:
        """Create the owner the way the onboarding screens do, then finish the remaining steps."""
        made = self.request("POST", "/api/onboarding/users", {
            "client_id": CLIENT_ID, "name": "Tester", "username": USER, "password": PASSWORD,
            "language": "en"}, auth=False)
        tokens = self.request("POST", "/auth/token", form={
            "grant_type": "authorization_code", "code": made["auth_code"], "client_id": CLIENT_ID},
            auth=False)
        self.token, self.refresh_token = tokens["access_token"], tokens["refresh_token"]
        # This step also starts a few integrations of its own (weather, TTS, shopping list). Their
        # packages are not in the tier's venv, so they fail to load (a logged error, and no
        # traffic beyond loopback); the entries that do get created are removed below.
        self.request("POST", "/api/onboarding/core_config", {})
        self.request("POST", "/api/onboarding/analytics", {})
        self.request("POST", "/api/onboarding/integration", {"client_id": CLIENT_ID,
                                                             "redirect_uri": CLIENT_ID})
        for entry in self.request("GET", "/api/config/config_entries/entry"):
            if entry["domain"] in ("google_translate", "shopping_list", "met", "radio_browser"):
                self.request("DELETE", f"/api/config/config_entries/entry/{entry['entry_id']}")

    def login(self) -> None:
        """A fresh access token after a restart (they live 30 minutes)."""
        assert self.refresh_token
        tokens = self.request("POST", "/auth/token", form={
            "grant_type": "refresh_token", "refresh_token": self.refresh_token, "client_id": CLIENT_ID},
            auth=False)
        self.token = tokens["access_token"]

    def add_mqtt(self) -> dict[str, Any]:
        """Settings → Devices & services → Add integration → MQTT, as a user does it."""
        flow = self.request("POST", "/api/config/config_entries/flow",
                            {"handler": "mqtt", "show_advanced_options": False})
        if flow.get("type") == "form":
            flow = self.request("POST", f"/api/config/config_entries/flow/{flow['flow_id']}",
                                {"broker": "127.0.0.1", "port": self.mqtt_port})
        if flow.get("type") != "create_entry":
            raise HassError(f"MQTT config flow ended with {flow}")
        return dict(flow)

    def state(self, entity_id: str) -> dict[str, Any] | None:
        got = self.request("GET", f"/api/states/{entity_id}", expect=None)
        return got if isinstance(got, dict) and "state" in got else None

    def states(self, domain: str) -> list[dict[str, Any]]:
        return [s for s in self.request("GET", "/api/states") if s["entity_id"].startswith(domain + ".")]


class HassSocket:
    """Home Assistant's websocket API on a loop thread of its own: commands, and every state_changed.

    Tornado's websocket client does the talking (the project's venv has it; HA's aiohttp lives in
    the other venv).
    """

    def __init__(self, hass: HomeAssistant) -> None:
        self.hass = hass
        self.changes: list[StateChange] = []
        self.lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="hass-ws", daemon=True)
        self.thread.start()
        self._next_id = 1
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._conn: Any = None
        self._reading: asyncio.Future[None] | None = None
        self._run(self._connect())
        self.command({"type": "subscribe_events", "event_type": "state_changed"})

    def _run(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _connect(self) -> None:
        from tornado.websocket import websocket_connect

        self._conn = await websocket_connect(f"ws://127.0.0.1:{self.hass.port}/api/websocket",
                                             max_message_size=64 * 1024 * 1024)
        hello = json.loads(await self._conn.read_message())
        assert hello["type"] == "auth_required", hello
        await self._conn.write_message(json.dumps({"type": "auth", "access_token": self.hass.token}))
        answer = json.loads(await self._conn.read_message())
        if answer["type"] != "auth_ok":
            raise HassError(f"websocket auth failed: {answer}")
        self._reading = asyncio.ensure_future(self._reader())

    async def _reader(self) -> None:
        while True:
            raw = await self._conn.read_message()
            if raw is None:
                for future in self._pending.values():
                    if not future.done():
                        future.set_exception(HassError("websocket closed"))
                return
            msg = json.loads(raw)
            if msg.get("type") == "event":
                data = msg["event"]["data"]
                new = data.get("new_state")
                with self.lock:
                    self.changes.append(StateChange(time.monotonic(), data["entity_id"],
                                                    new["state"] if new else None,
                                                    new["attributes"] if new else {}))
            elif msg.get("type") == "result":
                future = self._pending.pop(msg["id"], None)
                if future is not None and not future.done():
                    future.set_result(msg)

    async def _command(self, body: dict[str, Any]) -> dict[str, Any]:
        msg_id = self._next_id
        self._next_id += 1
        future: asyncio.Future[dict[str, Any]] = self.loop.create_future()
        self._pending[msg_id] = future
        await self._conn.write_message(json.dumps({**body, "id": msg_id}))
        return await asyncio.wait_for(future, 60)

    def command(self, body: dict[str, Any]) -> dict[str, Any]:
        """Send one command and return HA's result message (``success`` and ``result`` or ``error``)."""
        return dict(self._run(self._command(body), 90))

    def ok(self, body: dict[str, Any]) -> Any:
        answer = self.command(body)
        if not answer.get("success"):
            raise HassError(f"{body['type']} failed: {answer.get('error')}")
        return answer.get("result")

    def call_service(self, domain: str, service: str, entity_id: str, **data: Any) -> dict[str, Any]:
        return self.command({"type": "call_service", "domain": domain, "service": service,
                             "service_data": data, "target": {"entity_id": entity_id}})

    def history(self, entity_id: str, since: float = 0.0) -> list[StateChange]:
        with self.lock:
            return [c for c in self.changes if c.entity_id == entity_id and c.at >= since]

    def wait_state(self, entity_id: str, predicate: Callable[[StateChange], bool], timeout: float = 30,
                   since: float = 0.0, what: str = "") -> StateChange:
        return wait_until(lambda: next((c for c in reversed(self.history(entity_id, since)) if predicate(c)),
                                       None),
                          timeout, what or f"a state of {entity_id}")

    def close(self) -> None:
        if self._conn is not None:
            self.loop.call_soon_threadsafe(self._conn.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
