"""Real parts for the tests: a mosquitto we start, servers on real sockets, files in tmp_path.

Every test gets its own topic prefix, so tests sharing one broker never see each other's
retained messages. Waiting is always on a condition with a deadline, never a bare sleep.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import getpass
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest

from tinyota_mqtt.config import load_config
from tinyota_mqtt.config.model import Config
from tinyota_mqtt.core.image import make_test_image
from tinyota_mqtt.runner import Overrides, Server

ROOT = Path(__file__).resolve().parent.parent
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


@contextlib.contextmanager
def full_disk(limit: int = 4096) -> Iterator[None]:
    """Every file this process writes stops growing past ``limit`` bytes, as on a full disk.

    The kernel's RLIMIT_FSIZE makes the writes fail with EFBIG (SIGXFSZ ignored), for real."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    before = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, before)


class _Ports:
    """Ports for servers a test starts later, chosen below Linux's ephemeral range (32768 and up by
    default): port 0 hands out a port from that range, where any process's outgoing connection
    may take it before the server binds, and may hand the same port out twice in a row (a server's
    and its broker's). Each port is given once per process."""

    LOW, HIGH = 20000, 32767

    def __init__(self) -> None:
        self.given: set[int] = set()

    def take(self) -> int:
        for _ in range(1000):
            port = self.LOW + int.from_bytes(os.urandom(2), "big") % (self.HIGH - self.LOW + 1)
            if port in self.given:
                continue
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue  # in use now
            self.given.add(port)
            return port
        raise AssertionError(f"no free port between {self.LOW} and {self.HIGH}")


_PORTS = _Ports()


def free_port() -> int:
    return _PORTS.take()


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


# -- mosquitto ------------------------------------------------------------------------------------

class Mosquitto:
    """A mosquitto of our own: generated config, free port, optional password file and ACL."""

    def __init__(self, workdir: Path, *, users: dict[str, str] | None = None, acl: str | None = None,
                 extra: str = "") -> None:
        if not Path(MOSQUITTO).exists():
            pytest.fail("mosquitto is not installed: apt-get install mosquitto (the README's test "
                        "command and .ci/run install it)")
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        # Started as root, mosquitto drops to the 'mosquitto' user and then cannot read our 0600
        # files; telling it to stay who we are keeps the test files private and readable.
        lines = [f"user {getpass.getuser()}", f"listener {self.port} 127.0.0.1", "persistence false",
                 "log_dest stderr",
                 "log_type error", "log_type warning"]
        if users:
            pwfile = self.dir / "passwd"
            pwfile.write_text("")
            for user, password in users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(pwfile), user, password], check=True)
            pwfile.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {pwfile}"]
        else:
            lines.append("allow_anonymous true")
        if acl is not None:
            aclfile = self.dir / "acl"
            aclfile.write_text(textwrap.dedent(acl))
            aclfile.chmod(0o600)
            lines.append(f"acl_file {aclfile}")
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n" + extra)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Mosquitto:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stderr=subprocess.PIPE)

        def accepting() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"mosquitto exited: {self.proc.stderr.read().decode()}")  # type: ignore[union-attr]
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return True
            except OSError:
                return False

        wait_until(accepting, 10, "mosquitto to accept connections")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """One anonymous mosquitto shared by the session (tests use unique topic prefixes).

    Its retained messages pile up over the session (every test's Home Assistant discovery), and a
    '#' probe is sent all of them at subscribe time. mosquitto queues at most 1,000 QoS 1 messages
    per client by default and drops the rest, the probe's own marker after them included, so late
    in a full run such a probe never saw it: no limit here."""
    mosq = Mosquitto(tmp_path_factory.mktemp("mosquitto"), extra="max_queued_messages 0\n").start()
    yield mosq
    mosq.stop()


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


# -- an MQTT client for the tests -----------------------------------------------------------------

class Probe:
    """A paho client that records everything it receives, for assertions."""

    def __init__(self, url: str, *, client_id: str | None = None, username: str | None = None,
                 password: str | None = None, will: tuple[str, bytes] | None = None) -> None:
        host, port = url.removeprefix("mqtt://").split(":")
        self.messages: list[paho.MQTTMessage] = []
        self.lock = threading.Lock()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"probe-{uuid.uuid4().hex[:8]}")
        if username:
            self.client.username_pw_set(username, password)
        if will:
            self.client.will_set(will[0], will[1], qos=1, retain=True)
        self.connected = threading.Event()
        self.refused: Any = None

        def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            if reason.is_failure:
                self.refused = reason
            else:
                self.connected.set()

        def on_message(_c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
            with self.lock:
                self.messages.append(msg)

        self.client.on_connect = on_connect
        self.client.on_message = on_message
        self.client.connect(host, int(port), 30)
        self.client.loop_start()

    def wait_connected(self) -> Probe:
        wait_until(lambda: self.connected.is_set() or self.refused is not None, 10, "probe to connect")
        return self

    def subscribe(self, topic: str, qos: int = 1) -> Probe:
        done = threading.Event()
        self.client.on_subscribe = lambda *_a: done.set()
        self.client.subscribe(topic, qos)
        assert done.wait(10), f"subscription to {topic} not acknowledged"
        return self

    def publish(self, topic: str, payload: bytes | str, *, retain: bool = False, qos: int = 1) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(10)

    def received(self, topic: str) -> list[paho.MQTTMessage]:
        with self.lock:
            return [m for m in self.messages if m.topic == topic]

    def last(self, topic: str) -> paho.MQTTMessage | None:
        got = self.received(topic)
        return got[-1] if got else None

    def wait_for(self, topic: str, predicate: Callable[[paho.MQTTMessage], bool] = lambda m: True,
                 timeout: float = 10.0) -> paho.MQTTMessage:
        return wait_until(lambda: next((m for m in reversed(self.received(topic)) if predicate(m)), None),
                          timeout, f"a message on {topic}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def probes() -> Iterator[Callable[..., Probe]]:
    made: list[Probe] = []

    def make(url: str, **kw: Any) -> Probe:
        probe = Probe(url, **kw).wait_connected()
        made.append(probe)
        return probe

    yield make
    for probe in made:
        probe.close()


# -- configs --------------------------------------------------------------------------------------

BASE_CONFIG = """\
server:
  host: 127.0.0.1
  port: {port}
  public_url: http://127.0.0.1:{port}
  store: firmware
  state: state.sqlite
  admin: {{username: admin, password: admin-secret}}
mqtt:
  url: {mqtt}
  prefix: {prefix}
  client_id: tinyota-{prefix}
homeassistant:
  enabled: true
  discovery_prefix: {prefix}-ha
  status_topic: {prefix}-ha/status
images:
  kitchen: {{platform: esp8266}}
  sensor: {{platform: esp32}}
groups:
  kitchen-lights: {{image: kitchen, auto_update: true, attempt_timeout: {timeout}, confirm: {confirm}}}
  sensors: {{image: sensor, auto_update: false, attempt_timeout: {timeout}, confirm: {confirm}}}
devices:
  kitchen-1: {{group: kitchen-lights, password: pw-kitchen-1}}
  kitchen-2: {{group: kitchen-lights, password: pw-kitchen-2}}
  sensor-1: {{group: sensors, password: pw-sensor-1}}
  loner: {{password: pw-loner}}
"""


def write_config(directory: Path, *, mqtt: str = "mqtt://127.0.0.1:9", prefix: str = "tinyota", port: int | None = None,
                 timeout: str = "30s", text: str | None = None, confirm: str = "report") -> Path:
    """The test config. ``confirm`` defaults to "report": most tests play devices by publishing
    their reports by hand, without downloading; the download+report rule has tests of its own."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.yaml"
    body = text if text is not None else BASE_CONFIG
    path.write_text(body.format(port=port or free_port(), mqtt=mqtt, prefix=prefix, timeout=timeout,
                                confirm=confirm))
    return path


def release(config: Config, image: str, version: str, size: int = 64 * 1024, notes: str = "",
            replace: bool = False) -> Any:
    from tinyota_mqtt.store import FirmwareStore

    store = FirmwareStore(config.server.store)
    path = config.server.store.parent / f"{image}-{version}.bin"
    platform = config.images[image].platform
    path.write_bytes(make_test_image(version, size, fill=os.urandom(64), platform=platform))
    return store.add_file(path, image, version, notes, platform=platform, replace=replace)


# -- a real server, in this process, on its own loop thread ---------------------------------------

class ServerThread:
    def __init__(self, config_path: Path, overrides: Overrides = Overrides()) -> None:
        self.config_path = config_path
        self.config = load_config(config_path)
        self.server = Server(self.config, overrides)
        self.loop = asyncio.new_event_loop()
        self._ready = concurrent.futures.Future[None]()
        self._stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._run, name="tinyota-server", daemon=True)

    @property
    def service(self) -> Any:
        return self.server.service

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            self._stop = asyncio.Event()
            try:
                await self.server.start()
            except BaseException as exc:
                self._ready.set_exception(exc)
                return
            self._ready.set_result(None)
            await self._stop.wait()
            await self.server.stop()

        self.loop.run_until_complete(main())

    def start(self) -> ServerThread:
        self.thread.start()
        self._ready.result(15)
        return self

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn`` on the server's loop thread (where the service lives) and return its result."""
        future = concurrent.futures.Future[Any]()

        def run() -> None:
            try:
                future.set_result(fn(*args))
            except BaseException as exc:
                future.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return future.result(15)

    def view(self, device: str) -> dict[str, Any]:
        return dict(self.call(self.service.device_view, device))

    def stop(self) -> None:
        if self._stop is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
            self.thread.join(15)


@pytest.fixture
def servers() -> Iterator[Callable[..., ServerThread]]:
    made: list[ServerThread] = []

    def make(config_path: Path, overrides: Overrides = Overrides()) -> ServerThread:
        server = ServerThread(config_path, overrides).start()
        made.append(server)
        return server

    yield make
    for server in reversed(made):
        server.stop()


# -- the CLI as a user runs it --------------------------------------------------------------------

def tinyota(*args: str, cwd: Path | None = None, timeout: float = 60,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tinyota_mqtt", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env={**os.environ, **(env or {})})


class ServerProcess:
    """``tinyota serve`` in a child process: for kill -9, signals and the printed banner."""

    def __init__(self, config_path: Path, *extra: str, preexec: Callable[[], None] | None = None) -> None:
        self.config_path = config_path
        self.args = extra
        self.preexec = preexec
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    def start(self) -> ServerProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tinyota_mqtt", "serve", "-c", str(self.config_path), *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=self.preexec)
        threading.Thread(target=self._pump, daemon=True).start()
        wait_until(lambda: any("serving on" in line for line in self.output) or self.proc.poll() is not None,  # type: ignore[union-attr]
                   20, "the server banner")
        assert self.proc.poll() is None, "".join(self.output)
        return self

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    @property
    def port(self) -> int:
        banner = next(line for line in self.output if "serving on" in line)
        return int(banner.split("serving on ")[1].split()[0].rsplit(":", 1)[1])

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(15)


@pytest.fixture
def processes() -> Iterator[Callable[..., ServerProcess]]:
    made: list[ServerProcess] = []

    def make(config_path: Path, *extra: str, preexec: Callable[[], None] | None = None) -> ServerProcess:
        proc = ServerProcess(config_path, *extra, preexec=preexec).start()
        made.append(proc)
        return proc

    yield make
    for proc in made:
        proc.kill()


# -- a real browser (the dashboard tests) ---------------------------------------------------------
# Session-wide and here, not in a test module: Playwright's sync API runs one instance per thread,
# so every module with browser tests must share this one.

CHROMIUM = os.environ.get("TINYOTA_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"headless Chromium is not installed ({CHROMIUM}): apt-get install chromium "
                    "(./dev test installs it; set TINYOTA_CHROMIUM to use another binary)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright for Python is missing: .venv/bin/pip install -e '.[dev]'")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def fleet(tmp_path: Path) -> Any:
    """``fleet(**kw)``: a Service on files in tmp_path with a recording bus (test_outcomes.Fleet),
    closed after the test; for the service-level files test_outcomes, test_announcer, test_reports."""
    from tests.test_outcomes import Fleet

    made: list[Fleet] = []

    def make(**kw: Any) -> Fleet:
        made.append(Fleet(tmp_path, **kw))
        return made[-1]

    yield make
    for f in made:
        f.close()
