"""An ESPHome device for the tests, run by the YAML that ``tinyota esphome-snippet`` gives out.

No ESPHome firmware runs here (no hardware, and compiling needs toolchains from the internet), so
this imitates the parts of ESPHome the snippet uses, as the source of the pinned ESPHome 2026.10.0
reads (``./dev esphome-venv``; paths under ``esphome/components/``):

- ``mqtt/mqtt_client.cpp``: connects with the snippet's user name and password and its
  ``will_message`` as the last will; publishes ``birth_message`` once connected and runs
  ``on_connect``; subscribes to the ``on_json_message`` topic at its QoS. Before a reboot it
  publishes ``shutdown_message`` and disconnects cleanly (``on_shutdown``), so the will is not sent.
- ``json/json_util.cpp`` ``parse_json``: a payload that is empty or not JSON runs nothing; JSON that
  is not an object reaches the actions as an empty object.
- ``http_request/ota/ota_http_request.cpp`` ``flash()``: notifies OTA_STARTED (``on_begin``); GETs the
  URL with ``user:password@`` put into it, which both HTTP clients turn into a Basic
  ``Authorization`` header on the first request (esp_http_client with ``auth_type`` BASIC, Arduino's
  HTTPClient ``begin()``), with ``User-Agent: ESPHome/<version> (https://esphome.io)`` and no
  redirects (``follow_redirects: false``); a status other than 200 is error 0x12; streams the body
  into the OTA partition, notifying progress at most once a second and at the end
  (``on_progress``); compares the body's MD5 with the *announced* ``md5`` (0x8B when they differ);
  then OTA_COMPLETED (``on_end``) and ``App.safe_reboot()``, or OTA_ERROR (``on_error``) with the code.
- ``globals/globals_component.h`` ``RestoringGlobalStringComponent``: a restored global lives in
  memory and reaches "flash" (a file here) when saved: by ``update()`` + ``global_preferences->sync()``
  or at a clean shutdown; a crash keeps only what was saved.

The snippet is read, not repeated: topics, QoS, retain flags, payload keys and values, the order of
the announcement's checks and what each branch does come from its YAML. C++ cannot be read here:
each ``if`` names its check in a ``// tinyota:<name>`` comment and the stand-in runs its Python twin
of that C++ (``CHECKS``), and each payload value must be one of the few C++ expressions ``_value``
knows; any other fails the test, so a changed snippet needs a changed stand-in.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as paho
import yaml

from tinyota_mqtt.core.image import find_version

ESPHOME_USER_AGENT = "ESPHome/2026.10.0 (https://esphome.io)"
PROGRESS_INTERVAL = 1.0  # ota_http_request.cpp: progress at most once a second, and at the end
MD5_MISMATCH = 0x8B
CONNECTION_ERROR = 0x12


@dataclass(frozen=True)
class Secret:
    name: str


@dataclass(frozen=True)
class Lambda:
    code: str


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!secret", lambda loader, node: Secret(loader.construct_scalar(node)))
_Loader.add_constructor("!lambda", lambda loader, node: Lambda(loader.construct_scalar(node)))


def _substitute(value: Any, subs: dict[str, str]) -> Any:
    if isinstance(value, str):
        return re.sub(r"\$\{(\w+)\}", lambda m: subs[m.group(1)], value)
    if isinstance(value, Lambda):
        return Lambda(_substitute(value.code, subs))
    if isinstance(value, list):
        return [_substitute(v, subs) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, subs) for k, v in value.items()}
    return value


def load_snippet(text: str, version: str) -> dict[str, Any]:
    """The snippet as ESPHome reads it, with the device YAML's ``tinyota_version`` substituted."""
    doc = yaml.load(text, Loader=_Loader)
    subs = {**doc.get("substitutions", {}), "tinyota_version": version}
    return dict(_substitute(doc, {k: str(v) for k, v in subs.items()}))


# -- the Python twins of the snippet's C++ checks (core/esphome.py) --------------------------------

def _text(x: dict[str, Any], key: str, most: int) -> bool:
    value = x.get(key)
    if not isinstance(value, str):
        return False
    raw = value.encode("utf-8").split(b"\0")[0]  # strlen()
    return 0 < len(raw) <= most and all(0x21 <= b <= 0x7E for b in raw)


def malformed(x: dict[str, Any], env: Env) -> bool:
    if not (_text(x, "id", 64) and _text(x, "version", 64) and _text(x, "url", 384) and _text(x, "md5", 32)):
        return True
    md5 = x["md5"]
    return len(md5) != 32 or any(c not in "0123456789abcdef" for c in md5)


def foreign_url(x: dict[str, Any], env: Env) -> bool:
    base = env.server_url + "/"
    url = str(x["url"])
    if not url.startswith(base):
        return True
    if any(bad in url for bad in ("@", "\\", "/./", "/../", "%2e", "%2E", "%2f", "%2F", "%5c", "%5C")):
        return True
    return url.endswith("/.") or url.endswith("/..")


CHECKS: dict[str, Callable[[dict[str, Any], Env], bool]] = {
    "malformed": malformed,
    "runs-it": lambda x, env: x["version"] == env.version,
    "attempted": lambda x, env: x["id"] == env.attempted,
    "foreign-url": foreign_url,
}


@dataclass
class Env:
    version: str
    attempted: str
    server_url: str


class Unknown(AssertionError):
    """The snippet says something the stand-in does not imitate yet: teach it, do not guess."""


def _value(expr: str, x: Any, env: Env, local: dict[str, str]) -> Any:
    """One C++ expression of a payload lambda, as the few forms the snippet uses."""
    expr = expr.strip()
    if expr.startswith('"'):
        return json.loads(expr)
    if re.fullmatch(r"-?\d+", expr):
        return int(expr)
    known: dict[str, Callable[[], Any]] = {
        "ESPHOME_PROJECT_VERSION": lambda: env.version,
        "id(tinyota_attempted)": lambda: env.attempted,
        'x["id"].as<std::string>()': lambda: x["id"],
        "(int) x": lambda: int(x),
        'x < 100 ? "downloading" : "flashing"': lambda: "downloading" if x < 100 else "flashing",
    }
    if expr in known:
        return known[expr]()
    if expr in local:
        return local[expr]
    raise Unknown(f"payload expression {expr!r}")


def payload_of(code: str, x: Any, env: Env) -> dict[str, Any]:
    """Run a ``mqtt.publish_json`` payload lambda: ``root[...] = ...;`` lines, and the on_error text."""
    body: dict[str, Any] = {}
    local: dict[str, str] = {}
    cases = {int(code_, 16): why for code_, why in re.findall(r'case 0x([0-9A-Fa-f]+): why = ("[^"]*");', code)}
    for line in code.splitlines():
        line = line.strip()
        if m := re.fullmatch(r'root\["(\w+)"\] = (.+);', line):
            body[m.group(1)] = _value(m.group(2), x, env, local)
        elif m := re.fullmatch(r'const char \*why = ("[^"]*");', line):
            local["why"] = json.loads(cases.get(x, m.group(1)))
        elif line == "std::string error = why;":
            local["error"] = local["why"]
        elif m := re.fullmatch(r'error \+= ("[^"]*");', line):
            local["error"] += json.loads(m.group(1))
        elif line == "error += digits[(x >> 4) & 15];":
            local["error"] += "0123456789ABCDEF"[(x >> 4) & 15]
        elif line == "error += digits[x & 15];":
            local["error"] += "0123456789ABCDEF"[x & 15]
        elif line in ("", "switch (x) {", "}", 'static const char *const digits = "0123456789ABCDEF";') or \
                line.startswith("case 0x"):
            continue
        else:
            raise Unknown(f"payload line {line!r}")
    return body


# -- the device ----------------------------------------------------------------------------------

class Reboot(Exception):
    pass


class EsphomeStandIn:
    """One ESPHome device: its "flash" (the attempted id, the firmware) lives in ``state_dir``."""

    def __init__(self, snippet: str, *, version: str, secrets: dict[str, str], state_dir: Path,
                 crash_after_bytes: int | None = None) -> None:
        self.text = snippet
        self.version = version
        self.secrets = secrets
        self.dir = state_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.crash_after_bytes = crash_after_bytes  # a power cut this far into a download
        self.events: list[str] = []  # what it did, for assertions and failure messages
        self.downloads: list[str] = []
        self.client: paho.Client | None = None
        self.connected = threading.Event()
        self.jobs: queue.Queue[tuple[str, bytes] | None] = queue.Queue()
        self.worker: threading.Thread | None = None
        self.boots = 0
        self.attempted = ""
        self.dead = False

    # The parts of the snippet it follows.
    @property
    def conf(self) -> dict[str, Any]:
        return load_snippet(self.text, self.version)

    @property
    def mqtt(self) -> dict[str, Any]:
        return dict(self.conf["mqtt"])

    @property
    def ota(self) -> dict[str, Any]:
        (platform,) = [o for o in self.conf["ota"] if o["platform"] == "http_request"]
        return dict(platform)

    def env(self) -> Env:
        return Env(self.version, self.attempted, self.conf["substitutions"]["tinyota_server_url"])

    def _secret(self, value: Any) -> str:
        return self.secrets[value.name] if isinstance(value, Secret) else str(value)

    # Boot, connect, reboot.
    def start(self) -> EsphomeStandIn:
        self.boots += 1
        flash = self.dir / "attempted"
        self.attempted = flash.read_text() if flash.exists() else ""  # restore_value: true
        firmware = self.dir / "firmware.bin"
        if firmware.exists():
            self.version = find_version(firmware.read_bytes()) or "unknown"
        self.events.append(f"boot {self.boots}: version {self.version}, attempted {self.attempted!r}")
        self.dead = False
        conf = self.mqtt
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"{conf['username']}-{uuid.uuid4().hex[:6]}",
                             clean_session=False)
        client.username_pw_set(conf["username"], self._secret(conf["password"]))
        will = conf["will_message"]
        client.will_set(will["topic"], will["payload"], qos=will["qos"], retain=will["retain"])
        client.on_connect = self._on_connect
        client.on_message = lambda _c, _u, msg: self.jobs.put((msg.topic, msg.payload))
        self.connected.clear()
        self.jobs = queue.Queue()  # what a previous life left queued died with it
        self.client = client
        self.worker = threading.Thread(target=self._loop, daemon=True, name=f"esphome-{conf['username']}")
        self.worker.start()
        client.connect(conf["broker"], conf["port"], int(str(conf.get("keepalive", 15)).rstrip("s")))
        client.loop_start()
        assert self.connected.wait(10), "the ESPHome stand-in did not connect"
        return self

    def _on_connect(self, client: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self.events.append(f"refused by the broker: {reason}")
            return
        conf = self.mqtt
        birth = conf["birth_message"]
        client.publish(birth["topic"], birth["payload"], qos=birth["qos"], retain=birth["retain"])
        self.jobs.put(("<connect>", b""))
        json_message = conf["on_json_message"]
        client.subscribe(json_message["topic"], json_message["qos"])
        self.connected.set()

    def _loop(self) -> None:
        """ESPHome's main loop: one job at a time, and a download blocks it until it ends."""
        while (job := self.jobs.get()) is not None and not self.dead:
            topic, payload = job
            try:
                if topic == "<connect>":
                    self._run(self.mqtt["on_connect"], None)
                elif topic == self.mqtt["on_json_message"]["topic"]:
                    self._on_json(payload)
            except Reboot:
                self._reboot()
                return

    def _on_json(self, payload: bytes) -> None:
        try:
            x = json.loads(payload) if payload else None
        except ValueError:
            self.events.append("announcement is not JSON: nothing runs")
            return
        if x is None:
            return
        self._run(self.mqtt["on_json_message"]["then"], x if isinstance(x, dict) else {})

    def _run(self, actions: list[dict[str, Any]], x: Any) -> None:
        for action in actions:
            (name, arg), = action.items()
            if name == "mqtt.publish_json":
                self._publish(arg, x)
            elif name == "logger.log":
                self.events.append(f"log {arg['level']}: {arg['format']}")
            elif name == "if":
                code = arg["condition"]["lambda"]
                tag = re.match(r"\s*// tinyota:([\w-]+):", code)
                if tag is None or tag.group(1) not in CHECKS:
                    raise Unknown(f"condition {code[:80]!r}")
                branch = "then" if CHECKS[tag.group(1)](x, self.env()) else "else"
                self.events.append(f"check {tag.group(1)}: {branch}")
                self._run(arg.get(branch, []), x)
            elif name == "globals.set":
                assert arg["id"] == "tinyota_attempted"
                code = arg["value"].code.strip()
                assert code == 'return x["id"].as<std::string>();', code
                self.attempted = x["id"]
            elif name == "lambda":
                assert arg.split() == ["tinyota_attempted->update();", "global_preferences->sync();"], arg
                self._save()
            elif name == "ota.http_request.flash":
                self._flash(arg, x)
            else:
                raise Unknown(f"action {name}")

    def _save(self) -> None:
        (self.dir / "attempted").write_text(self.attempted)

    def _publish(self, arg: dict[str, Any], x: Any) -> None:
        assert self.client is not None
        body = payload_of(arg["payload"], x, self.env())
        self.client.publish(arg["topic"], json.dumps(body, separators=(",", ":")), qos=arg["qos"],
                            retain=arg["retain"]).wait_for_publish(10)

    def _url_expr(self, value: Any, x: Any) -> str:
        assert isinstance(value, Lambda), value
        m = re.fullmatch(r'return x\["(\w+)"\]\.as<std::string>\(\);', value.code.strip())
        if m is None:
            raise Unknown(f"flash argument {value.code!r}")
        return str(x[m.group(1)])

    def _trigger(self, name: str, x: Any) -> None:
        self._run(self.ota.get(name, []), x)

    def _flash(self, arg: dict[str, Any], x: Any) -> None:
        url, md5 = self._url_expr(arg["url"], x), self._url_expr(arg["md5"], x)
        user, password = self._secret(arg["username"]), self._secret(arg["password"])
        self._trigger("on_begin", None)
        parts = urlsplit(url)
        self.downloads.append(url)
        self.events.append(f"download {url}")
        conn_type = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = conn_type(parts.hostname or "", parts.port, timeout=10)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        try:
            conn.request("GET", path, headers={"Authorization": f"Basic {token}", "User-Agent": ESPHOME_USER_AGENT})
            response = conn.getresponse()
            if response.status != 200:
                self.events.append(f"HTTP {response.status}")
                self._trigger("on_error", CONNECTION_ERROR)
                return
            length = int(response.getheader("Content-Length") or 0)
            digest, received, last = hashlib.md5(), bytearray(), time.monotonic()
            while chunk := response.read(4096):
                digest.update(chunk)
                received += chunk
                if self.crash_after_bytes is not None and len(received) >= self.crash_after_bytes:
                    self.events.append(f"power cut after {len(received)} bytes")
                    self.crash()
                    return
                now = time.monotonic()
                if now - last > PROGRESS_INTERVAL or len(received) == length:
                    last = now
                    self._trigger("on_progress", len(received) * 100.0 / length)
        except OSError as exc:
            self.events.append(f"connection error: {exc}")
            self._trigger("on_error", CONNECTION_ERROR)
            return
        finally:
            conn.close()
        if digest.hexdigest() != md5:
            self._trigger("on_error", MD5_MISMATCH)
            return
        (self.dir / "firmware.bin").write_bytes(bytes(received))
        self._trigger("on_end", None)
        raise Reboot

    def _shutdown(self) -> None:
        """``App.safe_reboot()``: the components' on_shutdown, then a clean disconnect."""
        self._save()
        assert self.client is not None
        bye = self.mqtt["shutdown_message"]
        self.client.publish(bye["topic"], bye["payload"], qos=bye["qos"], retain=bye["retain"]).wait_for_publish(10)
        self.client.disconnect()
        self.client.loop_stop()

    def _reboot(self) -> None:
        self.events.append("reboot")
        self._shutdown()
        threading.Thread(target=self.start, daemon=True).start()

    def crash(self) -> None:
        """A power cut: no shutdown hooks, the socket just goes (the broker sends the will)."""
        assert self.client is not None
        self.dead = True
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:
            sock.close()
        self.jobs.put(None)

    def stop(self) -> None:
        """Switched off between two jobs: the one under way ends first, then a clean disconnect."""
        self.jobs.put(None)
        if self.worker is not None and self.worker is not threading.current_thread():
            self.worker.join(15)
        self.dead = True
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
