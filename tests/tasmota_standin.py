"""A Tasmota stand-in: what a Tasmota device does on MQTT and HTTP during an upgrade.

Tasmota firmware cannot run here, so this plays it, written from Tasmota's docs and source (read
through the project's search tools; no code copied):

* Topics (docs ``MQTT.md``): commands on ``cmnd/<topic>/<Command>`` with the parameter as payload,
  replies on ``stat/<topic>/RESULT`` (``stat/<topic>/<COMMAND>`` with SetOption4 1), the last will
  ``tele/<topic>/LWT`` = ``Online`` / ``Offline`` (retained), and the group topic
  ``cmnd/tasmotas/``. The default FullTopic ``%prefix%/%topic%/``.
* ``OtaUrl <url>`` (``support_command.ino`` ``CmndOtaUrl``): stores the URL, 100 characters at most
  (Commands docs), and echoes ``{"OtaUrl":"<url>"}``.
* ``Upgrade 1`` (``CmndUpgrade``): answers ``{"Upgrade":"Version 14.3.0(tasmota) from <url>"}``,
  then the upgrade loop (``support_tasmota.ino`` ``Every250mSeconds``) fetches the URL with the
  ESP8266 core's ``ESPhttpUpdate`` (its ``x-ESP8266-free-space``, ``-sketch-size`` and ``-version``
  headers), up to OTA_ATTEMPTS (5) tries. When the image is larger than the free sketch space
  (``HTTP_UE_TOO_LESS_SPACE``) the next try fetches the ``-minimal`` file name the loop derives;
  the core checks the x-MD5 header against the MD5 of what it flashed (``Update.setMD5``) and
  the first byte (0xE9, or 0x1f for gzip). Then ``{"Upgrade":"Successful. Restarting"}`` and a
  restart, or ``{"Upgrade":"Failed <reason>"}`` with ``ESPhttpUpdate.getLastErrorString()``'s
  words ("Not Enough space", "Forbidden (403)", "Wrong HTTP Code", "Verify Bin Header Failed"…).
* A restart: the subscriber sees ``Offline`` then ``Online`` on the LWT topic (the stand-in sends
  Offline itself, then drops the session, as ``WifiShutdown`` → ``MqttDisconnect`` ends it), then
  ``tele/<topic>/INFO1`` ``{"Info1":{"Module":…,"Version":"14.4.0(tasmota)",…}}`` (``xdrv_02_mqtt.ino``).
  The minimal build, booted by the first step, fetches the OtaUrl again at once (``RtcSettings.ota_loader``).
* ``Status 2``: ``stat/<topic>/STATUS2`` ``{"StatusFWR":{"Version":"14.3.0(tasmota)",…}}``.
* Discovery (``xdrv_12_discovery.ino``, and the keys hatasmota's schema requires): a retained
  ``tasmota/discovery/<MAC>/config``.

The version it boots into is read from the flashed image itself (the test images carry
``TINYOTA_FW_VERSION=``), so it runs what it was really sent.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import queue
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as paho

from tinyota_mqtt.core import image as esp_image
from tinyota_mqtt.core import tasmota

OTA_ATTEMPTS = 5
OTAURL_LIMIT = 100


@dataclass
class Fetch:
    url: str
    status: int
    note: str = ""


@dataclass
class TasmotaStandIn:
    broker_url: str
    topic: str
    version: str = "14.3.0"
    mac: str = field(default_factory=lambda: uuid.uuid4().hex[:12].upper())
    free_space: int = 1_000_000  # the free sketch space the full firmware leaves
    minimal_free_space: int = 2_000_000  # what the minimal build leaves
    setoption4: bool = False
    flash_error: str | None = None  # the Updater refuses what it received, with this reason
    unreachable: bool = False  # the server cannot be reached from the device (a firewall, a wrong route)
    # Set by a test to hold the minimal build before its download (so the server can go away then).
    hold_minimal: threading.Event | None = None
    username: str | None = None
    password: str | None = None
    full_topic: str = tasmota.DEFAULT_FULL_TOPIC

    def __post_init__(self) -> None:
        self.image = "tasmota"
        self.ota_url = "http://ota.tasmota.com/tasmota/release/tasmota.bin.gz"  # the firmware default
        self.fetches: list[Fetch] = []
        self.boots = 0
        self.where = tasmota.Topics(self.topic, self.full_topic)
        self.group = tasmota.Topics(tasmota.GROUP_TOPIC, self.full_topic)
        self.online = threading.Event()
        self._client: paho.Client | None = None
        # Tasmota's main loop: commands one after another, and the upgrade (ota_state_flag) only
        # once no command waits (CommandsReady); the upgrade then blocks the loop, as on the device.
        self._inbox: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._ota: bool | None = None  # pending upgrade: may it use the minimal step?
        self.stopped = False
        threading.Thread(target=self._main_loop, daemon=True).start()

    # -- the MQTT session ------------------------------------------------------------------------

    def start(self) -> TasmotaStandIn:
        self.boots += 1
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"DVES_{self.mac[-6:]}-{self.boots}")
        if self.username:
            client.username_pw_set(self.username, self.password)
        client.will_set(self.where.tele("LWT"), b"Offline", qos=1, retain=True)
        client.on_connect = self._connected
        client.on_message = self._message
        host, port = self.broker_url.removeprefix("mqtt://").split(":")
        self.online.clear()
        client.connect(host, int(port), 30)
        client.loop_start()
        self._client = client
        if not self.online.wait(10):
            raise AssertionError(f"Tasmota stand-in {self.topic} did not connect")
        return self

    def _connected(self, client: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            return
        client.publish(self.where.tele("LWT"), b"Online", qos=1, retain=True)
        client.subscribe([(self.where.command("#"), 0), (self.group.command("#"), 0)])
        info = {"Info1": {"Module": "Generic", "Version": f"{self.version}({self.image})",
                          "FallbackTopic": f"cmnd/DVES_{self.mac[-6:]}_fb/", "GroupTopic": "cmnd/tasmotas/"}}
        client.publish(self.where.tele("INFO1"), json.dumps(info).encode(), qos=0)
        if self.image == "tasmota":
            client.publish(f"{tasmota.DISCOVERY_PREFIX}/{self.mac}/config", self.discovery(), qos=1, retain=True)
        self.online.set()
        if self.image == "minimal":
            # The minimal build goes on with the upgrade the first step started (ota_loader).
            self._inbox.put(("__upgrade__", "minimal-boot"))

    def discovery(self) -> bytes:
        body = {
            "ip": "127.0.0.1", "dn": f"Tasmota {self.topic}", "fn": ["Plug", None, None, None, None, None, None, None],
            "hn": f"tasmota-{self.mac[-6:]}-1234", "mac": self.mac, "md": "Sonoff Basic", "ty": 0, "if": 0,
            "ofln": "Offline", "onln": "Online", "state": ["OFF", "ON", "TOGGLE", "HOLD"], "sw": self.version,
            "t": self.topic, "ft": self.full_topic, "tp": ["cmnd", "stat", "tele"],
            "rl": [1, 0, 0, 0, 0, 0, 0, 0], "swc": [-1] * 8, "swn": [None] * 8, "btn": [0, 0, 0, 0],
            "so": {"4": int(self.setoption4), "11": 0, "13": 0, "17": 0, "20": 0, "30": 0, "68": 0, "73": 0,
                   "82": 0, "114": 0, "117": 0},
            "lk": 0, "lt_st": 0, "bat": 0, "dslp": 0, "sho": [], "sht": [], "ver": 1,
        }
        return json.dumps(body).encode()

    def publish(self, topic: str, body: dict[str, Any] | bytes, *, retain: bool = False) -> None:
        assert self._client is not None
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if threading.current_thread() is not self._client._thread:  # never inside paho's own callbacks
            info.wait_for_publish(10)

    def _reply(self, command: str, body: dict[str, Any]) -> None:
        self.publish(self.where.stat(command.upper() if self.setoption4 else "RESULT"), body)

    def _message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        self._inbox.put((msg.topic.rsplit("/", 1)[-1].lower(), msg.payload.decode("utf-8", "replace").strip()))

    def _main_loop(self) -> None:
        while True:
            item = self._inbox.get()
            if item is None:
                return
            self._command(*item)
            if self._ota is not None and self._inbox.empty():
                may_use_minimal, self._ota = self._ota, None
                self._try_upgrade(may_use_minimal)

    def _command(self, command: str, value: str) -> None:
        if command == "__upgrade__":
            self._ota = False
        elif command == "otaurl":
            if value:
                self.ota_url = value[:OTAURL_LIMIT]
            self._reply("OtaUrl", {"OtaUrl": self.ota_url})
        elif command == "upgrade":
            if value == "1":
                self._reply("Upgrade", {"Upgrade": f"Version {self.version}({self.image}) from {self.ota_url}"})
                self._ota = True  # ota_state_flag = 3: runs once the commands waiting are done
            else:
                self._reply("Upgrade", {"Upgrade": f"1 or >{self.version} to upgrade"})
        elif command == "status" and value == "2":
            self.publish(self.where.stat("STATUS2"), {"StatusFWR": {
                "Version": f"{self.version}({self.image})", "BuildDateTime": "2026-11-30T10:00:00", "Boot": 31,
                "Core": "2_7_8", "SDK": "2.2.2-dev(38a443e)", "CpuFrequency": 80, "Hardware": "ESP8266EX"}})

    # -- the upgrade loop --------------------------------------------------------------------------

    def _try_upgrade(self, may_use_minimal: bool) -> None:
        loader = False
        error = "Wrong HTTP Code"
        if self.image == "minimal" and self.hold_minimal is not None:
            self.hold_minimal.wait(30)
        for _ in range(OTA_ATTEMPTS - 1):  # ota_retry_counter counts down from OTA_ATTEMPTS
            url = tasmota.minimal_url(self.ota_url) if loader and may_use_minimal else self.ota_url
            outcome = self._fetch(url)
            if isinstance(outcome, bytes):
                self._reply("Upgrade", {"Upgrade": "Successful. Restarting"})
                self._restart(outcome, minimal=loader and may_use_minimal)
                return
            error = outcome
            if error == "Not Enough space":
                loader = True  # RtcSettings.ota_loader = 1: try the minimal image next
        self._reply("Upgrade", {"Upgrade": f"Failed {error}"})

    def _fetch(self, url: str) -> bytes | str:
        if self.unreachable:
            self.fetches.append(Fetch(url, 0, "unreachable"))
            return "HTTP error: connection failed"  # HTTPC_ERROR_CONNECTION_FAILED, as getLastErrorString words it
        parts = urlsplit(url)
        room = self.minimal_free_space if self.image == "minimal" else self.free_space
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=10)
        try:
            return self._get(conn, url, parts.path, room)
        except OSError:
            self.fetches.append(Fetch(url, 0, "connection failed"))
            return "HTTP error: connection failed"
        finally:
            conn.close()

    def _get(self, conn: http.client.HTTPConnection, url: str, path: str, room: int) -> bytes | str:
        conn.request("GET", path, headers={
            "User-Agent": "ESP8266-http-Update", "x-ESP8266-free-space": str(room),
            "x-ESP8266-sketch-size": "600000", "x-ESP8266-chip-size": "1048576",
            "x-ESP8266-version": f"{self.version}({self.image})", "x-ESP8266-mode": "sketch"})
        resp = conn.getresponse()
        if resp.status != 200:
            resp.read()
            self.fetches.append(Fetch(url, resp.status))
            return {403: "Forbidden (403)", 404: "File Not Found (404)"}.get(resp.status, "Wrong HTTP Code")
        length = int(resp.getheader("Content-Length") or -1)
        if length <= 0:
            self.fetches.append(Fetch(url, 200, "no size"))
            return "Server Did Not Report Size"
        if length > room:
            self.fetches.append(Fetch(url, 200, "too big"))
            return "Not Enough space"  # ESPhttpUpdate stops here, before reading the body
        body = resp.read()
        self.fetches.append(Fetch(url, 200, "flashed"))
        if hashlib.md5(body).hexdigest() != resp.getheader("x-MD5"):
            return "Update error: MD5 check failed"
        if esp_image.kind(body[:2]) is None:
            return "Verify Bin Header Failed"
        if self.flash_error is not None:
            return self.flash_error
        return body

    def _restart(self, flashed: bytes, *, minimal: bool) -> None:
        inner = gzip.decompress(flashed) if flashed[:2] == esp_image.GZIP_MAGIC else flashed
        assert self._client is not None
        self.publish(self.where.tele("LWT"), b"Offline", retain=True)
        self._client.disconnect()
        self._client.loop_stop()
        self.version = esp_image.find_version(inner) or self.version
        self.image = "minimal" if minimal else "tasmota"
        if not self.stopped:
            self.start()

    def stop(self) -> None:
        """Leave the broker as it was found: no retained discovery or LWT of ours stays on it."""
        self.stopped = True
        self._inbox.put(None)
        if self._client is None:
            return
        for topic in (f"{tasmota.DISCOVERY_PREFIX}/{self.mac}/config", self.where.tele("LWT")):
            self._client.publish(topic, b"", qos=1, retain=True).wait_for_publish(10)
        self._client.disconnect()
        self._client.loop_stop()
