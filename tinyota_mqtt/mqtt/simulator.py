"""Simulated devices: Python stand-ins that speak the device half of the contract.

Each one behaves like esp_client on real hardware, closely enough to watch a whole update without
hardware and to drive benchmarks: it announces itself (last will, ``online``, an ``idle`` status),
acts only on an announcement for a version it does not run, downloads with its own credentials
and the headers ESP8266httpUpdate sends (HTTP/1.0, ``x-ESP8266-*``), refuses a response without
Content-Length, a wrong first byte or an MD5 mismatch, reports throttled progress, "reboots" into
the version the image declares, and never retries an announcement id that failed.

Trust, as on the device (esp_client/README.md): it downloads only from URLs under the server's
base URL (``server_url``, the config's ``server.public_url``) and, given the server's public key,
only acts on announcements whose signature verifies over the manifest with its own device id.
Anything else is answered ``failed`` with the reason, and no request is made.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from tinyota_mqtt.config.model import Config, Device
from tinyota_mqtt.core import image as esp_image
from tinyota_mqtt.core import trust
from tinyota_mqtt.core.httpauth import basic_header
from tinyota_mqtt.core.protocol import Announcement, Topics
from tinyota_mqtt.mqtt.client import LinkSettings, MqttLink

log = logging.getLogger("tinyota.simulator")

MAX_ANNOUNCEMENT = 1024


@dataclass
class SimSettings:
    device_id: str
    password: str
    broker: str
    version: str = "1.0.0"
    platform: str = "esp8266"
    prefix: str = "tinyota"
    free_space: int = 1_044_480  # a 4 MB ESP8266 with the default 1 MB sketch partition
    mqtt_username: str | None = None
    mqtt_password: str | None = None
    ca: str | None = None  # CA file for https:// downloads and mqtts:// (the device's trust anchor)
    rate: float | None = None  # bytes per second, like a device on weak Wi-Fi; None = as fast as it can
    reboot_seconds: float = 0.3
    progress_every: float = 0.5  # seconds between progress reports (a real device throttles too)
    on_event: Callable[[str, str], None] | None = None
    failed_ids: set[str] = field(default_factory=set)  # the device's "NVS": kept across reboots
    fail: bool = False  # a bad board on purpose: downloads, then reports a failed flash (tests, demo)
    # The server base URL the device was "built" with; None trusts any URL (only for tests and
    # benchmarks that build settings by hand: devices_for always sets it).
    server_url: str | None = None
    public_key: str | None = None  # 130 hex digits; with it, only signed announcements are acted on


class SimDevice:
    def __init__(self, settings: SimSettings) -> None:
        self.s = settings
        self.version = settings.version
        self.topics = Topics(settings.prefix)
        self.busy = threading.Lock()
        self.state = "idle"
        self.updates = 0
        self._link = self._make_link()
        self._stopped = threading.Event()
        self._refused: str | None = None  # the id last answered "failed" without an attempt
        self._verifier = None
        if settings.public_key is not None:
            from tinyota_mqtt.signing import Verifier

            self._verifier = Verifier(settings.public_key)

    def _make_link(self) -> MqttLink:
        s = self.s
        settings = LinkSettings(
            url=s.broker, client_id=f"sim-{s.device_id}", username=s.mqtt_username,
            password=s.mqtt_password, keepalive=30, ca=s.ca,
            will=(self.topics.availability(s.device_id), b"offline"), online=b"online")
        return MqttLink(settings, [(self.topics.update(s.device_id), 1)],
                        on_message=self._on_message, on_connected=self._on_connected)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self._link.start()

    def stop(self) -> None:
        self._stopped.set()
        self._link.stop()

    def _event(self, what: str) -> None:
        log.info("%s: %s", self.s.device_id, what)
        if self.s.on_event is not None:
            self.s.on_event(self.s.device_id, what)

    def _status(self, state: str, **extra: object) -> None:
        self.state = state
        body: dict[str, object] = {"state": state, "version": self.version, "platform": self.s.platform,
                                   "free_space": self.s.free_space}
        body.update({k: v for k, v in extra.items() if v is not None})
        # Real devices publish QoS 0 (PubSubClient cannot do more); retained so a restarted server
        # learns every device's last word at once.
        self._link.publish(self.topics.status(self.s.device_id), json.dumps(body).encode(),
                           retain=True, qos=0)

    def _on_connected(self) -> None:
        if self.state in ("idle", "failed"):
            self._status("idle")

    # -- announcements ---------------------------------------------------------------------------

    def _on_message(self, topic: str, payload: bytes, _retained: bool) -> None:
        if topic != self.topics.update(self.s.device_id) or not payload:
            return  # an empty retained payload means "nothing to do"
        if len(payload) > MAX_ANNOUNCEMENT:
            self._event(f"ignored an oversized announcement ({len(payload)} bytes)")
            return
        try:
            ann = json.loads(payload)
            wanted, url, ann_id = str(ann["version"]), str(ann["url"]), str(ann["id"])
            md5 = ann.get("md5")
        except (ValueError, KeyError, TypeError):
            self._event("ignored a malformed announcement")
            return
        if wanted == self.version or ann_id in self.s.failed_ids:
            return
        refusal = self._distrust(ann)
        if refusal is not None:
            if self._refused != ann_id:  # a redelivered refusal is not answered twice
                self._refused = ann_id
                self._status("failed", id=ann_id, error=refusal)
                self._event(f"announcement {ann_id} {refusal}")
            return
        if not self.busy.acquire(blocking=False):
            return  # already updating; the retained message is seen again after the reboot
        threading.Thread(target=self._update, args=(url, wanted, ann_id, md5),
                         name=f"sim-{self.s.device_id}-update", daemon=True).start()

    def _distrust(self, ann: dict[str, object]) -> str | None:
        """Why the device will not act on this announcement, or None when it may."""
        url = str(ann["url"])
        if self.s.server_url is not None and not trust.is_under_base(url, self.s.server_url):
            return trust.NOT_OUR_SERVER
        if self._verifier is None:
            return None
        sig = ann.get("sig")
        if sig is None:
            return trust.MISSING_SIGNATURE
        size = ann.get("size")
        if not isinstance(size, int):
            return trust.BAD_SIGNATURE
        try:
            signed = Announcement(id=str(ann["id"]), version=str(ann["version"]), url=url, size=size,
                                  md5=str(ann["md5"]), sha256=str(ann["sha256"]), image=str(ann.get("image", "")),
                                  device=self.s.device_id)
        except KeyError:
            return trust.BAD_SIGNATURE
        if not isinstance(sig, str) or not self._verifier.verify(signed.manifest(), sig):
            return trust.BAD_SIGNATURE
        return None

    def _update(self, url: str, wanted: str, ann_id: str, md5: str | None) -> None:
        try:
            self._event(f"updating {self.version} -> {wanted}")
            image = self._download(url, ann_id, md5)
            if image is None:
                return
            self._status("flashing", progress=100, id=ann_id)
            if self.s.fail:
                self._fail(ann_id, "flash write failed (simulated with --fail)")
                return
            declared = esp_image.find_version(image) or wanted
            self._status("rebooting", progress=100, id=ann_id)
            self._reboot(declared)
            self.updates += 1
            self._event(f"now running {self.version}")
        except Exception as exc:  # a simulated device must report, not die
            self._fail(ann_id, f"unexpected error: {exc}")
        finally:
            self.busy.release()

    def _fail(self, ann_id: str, error: str) -> None:
        self.s.failed_ids.add(ann_id)
        self._status("failed", id=ann_id, error=error)
        self._event(f"update failed: {error}")

    def _download(self, url: str, ann_id: str, md5: str | None) -> bytes | None:
        parts = urlsplit(url)
        conn: http.client.HTTPConnection
        if parts.scheme == "https":
            context = ssl.create_default_context(cafile=self.s.ca)
            conn = http.client.HTTPSConnection(parts.hostname or "", parts.port, timeout=30, context=context)
        else:
            conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
        # The ESP cores speak HTTP/1.0 so the server must send Content-Length, never chunks.
        conn._http_vsn, conn._http_vsn_str = 10, "HTTP/1.0"  # type: ignore[attr-defined]
        # arduino-esp32 names every ESP32 variant "ESP32" in these headers (HTTPUpdate.cpp).
        chip = "ESP8266" if self.s.platform == "esp8266" else "ESP32"
        headers = {
            "Authorization": basic_header(self.s.device_id, self.s.password),
            "User-Agent": f"{chip}-http-Update",
            f"x-{chip}-STA-MAC": "02:00:00:00:00:01", f"x-{chip}-free-space": str(self.s.free_space),
            f"x-{chip}-sketch-size": "400000", f"x-{chip}-chip-size": "4194304",
            f"x-{chip}-mode": "sketch", f"x-{chip}-version": self.version, "Connection": "close",
        }
        self._status("downloading", progress=0, id=ann_id)
        try:
            conn.request("GET", parts.path, headers=headers)
            resp = conn.getresponse()
            if resp.status == 304:
                self._status("idle", id=ann_id)
                return None
            if resp.status != 200:
                self._fail(ann_id, f"HTTP error: {resp.status} {resp.reason}")
                return None
            length = resp.getheader("Content-Length")
            if length is None or not length.isdigit():
                self._fail(ann_id, "server did not report size")
                return None
            total, got = int(length), bytearray()
            # Paced reads come in small pieces, so progress moves in steps a user can see.
            piece = 16384 if not self.s.rate else max(512, min(16384, int(self.s.rate / 8)))
            digest = hashlib.md5()
            last_report, started = 0.0, time.monotonic()
            while len(got) < total:
                chunk = resp.read(min(piece, total - len(got)))
                if not chunk:
                    break
                got += chunk
                digest.update(chunk)
                if self.s.rate:
                    ahead = len(got) / self.s.rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
                now = time.monotonic()
                if now - last_report >= self.s.progress_every:
                    last_report = now
                    self._status("downloading", progress=int(100 * len(got) / total), id=ann_id)
        except (OSError, http.client.HTTPException) as exc:
            self._fail(ann_id, f"download failed: {exc}")
            return None
        finally:
            conn.close()
        if len(got) != total:
            self._fail(ann_id, f"stream ended after {len(got)} of {total} bytes")
            return None
        if esp_image.kind(bytes(got[:2])) is None:
            self._fail(ann_id, "wrong magic byte")
            return None
        header_md5 = resp.getheader("x-MD5")
        for expected in (header_md5, md5):
            if expected and expected.lower() != digest.hexdigest():
                self._fail(ann_id, "MD5 check failed")
                return None
        return bytes(got)

    def _reboot(self, version: str) -> None:
        # A real reboot drops the MQTT session; the broker publishes our will ("offline").
        self._link.stop()
        time.sleep(self.s.reboot_seconds)
        self.version = version
        self.state = "idle"
        self._link = self._make_link()
        if not self._stopped.is_set():
            self._link.start()


def failing(ids: Collection[str], named: Collection[str] = (), rate: float = 0.0) -> set[str]:
    """The devices that fail on purpose: those named, plus a stable ``rate`` share of the rest
    (chosen by a hash of the id, so a rerun picks the same ones)."""
    def share(device: str) -> float:
        return int.from_bytes(hashlib.sha256(device.encode()).digest()[:4], "big") / 2**32

    return {d for d in ids if d in named or share(d) < rate}


def devices_for(config: Config, count: int | None, group: str | None, broker: str, version: str, *,
                passwords: Mapping[str, str] | None = None, fail: Collection[str] = (),
                **extra: object) -> list[SimDevice]:
    """Simulated stand-ins for configured devices whose password we know.

    A plain password comes from the config; a hashed one only from ``passwords``. Like esp_client
    by default, each device logs in to the broker with its own id and password too.
    """
    from tinyota_mqtt.errors import TinyOTAError

    given = dict(passwords or {})

    def password_of(device: Device) -> str | None:
        if device.id in given:
            return given[device.id]
        plain = device.password.plain if device.password is not None else None
        return plain.reveal() if plain is not None else None

    if group is not None and group not in config.groups:
        raise TinyOTAError(f"no group {group!r}", "groups: " + ", ".join(config.groups))
    chosen = [d for d in config.devices.values()
              if (group is None or d.group == group) and password_of(d) is not None]
    if count is not None:
        if count > len(chosen):
            raise TinyOTAError(
                f"asked for {count} simulated devices but the config has {len(chosen)} whose password is "
                "known" + (f" in group {group}" if group else ""),
                "a simulated device needs its password: add devices, give hashed ones' passwords in "
                "--password-file FILE (ID=PASS lines), or ask for fewer")
        chosen = chosen[:count]
    public_key = None
    if config.server.signing_key is not None:
        # The simulator runs beside the server: it reads the public half of the server's key,
        # as a real device has it compiled in.
        from tinyota_mqtt.signing import Signer

        public_key = Signer.load(config.server.signing_key).public_key
    sims = []
    for device in chosen:
        image = config.image_of(device.id)
        password = password_of(device)
        assert password is not None
        sims.append(SimDevice(SimSettings(
            device_id=device.id, password=password, broker=broker, version=version,
            platform=image.platform if image else "esp8266", prefix=config.mqtt.prefix,
            mqtt_username=device.id, mqtt_password=password, fail=device.id in fail,
            server_url=config.server.public_url, public_key=public_key, **extra)))  # type: ignore[arg-type]
    return sims


def run_simulation(config: Config, *, devices: int | None, group: str | None, broker: str | None,
                   version: str, duration: float | None, passwords: Mapping[str, str] | None = None,
                   fail: Collection[str] = (), fail_rate: float = 0.0,
                   rate: float | None = None) -> int:
    url = broker or (f"mqtt://{config.mqtt.embedded_host}:{config.mqtt.embedded_port}"
                     if config.mqtt.embedded else config.mqtt.url)
    unknown = [d for d in fail if d not in config.devices]
    if unknown:
        from tinyota_mqtt.errors import TinyOTAError

        raise TinyOTAError(f"--fail names unknown device(s): {', '.join(unknown)}")
    bad = failing(list(config.devices), fail, fail_rate)
    sims = devices_for(config, devices, group, url, version, passwords=passwords, fail=bad, rate=rate)
    if bad & {s.s.device_id for s in sims}:
        print(f"failing on purpose: {', '.join(sorted(bad & {s.s.device_id for s in sims}))}", flush=True)
    pace = f" at {rate:g} bytes/s" if rate else ""
    print(f"simulating {len(sims)} device(s) on {url}{pace}: {', '.join(s.s.device_id for s in sims)}. "
          "Ctrl-C stops.", flush=True)
    for sim in sims:
        sim.start()
    try:
        deadline = None if duration is None else time.monotonic() + duration
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        for sim in sims:
            sim.stop()
    return 0
