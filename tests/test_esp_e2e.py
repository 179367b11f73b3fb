"""End to end with the real device core: mosquitto, a TinyOTA server, and tinyota-device processes.

Every device here is ``esp_client/host/build/tinyota-device``: the state machine an ESP runs, on
libmosquitto and libcurl, sending the requests the ESP cores send. It "flashes" into
``<state-dir>/firmware.bin`` (via ``firmware.bin.partial``, renamed only after every check) and
"reboots" by re-executing itself into the version found in that image. The config from
``conftest.write_config`` has kitchen-1/kitchen-2 in kitchen-lights (auto update, esp8266) and
sensor-1 in sensors (on command, esp32).

A device that should start on a flashed image gets its ``firmware.bin`` put there first, as if
flashed at the factory; otherwise it runs its ``--version`` with nothing flashed. Every wait that
times out, and every assertion about a device, prints the tail of the devices' logs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import logging
import os
import re
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    Mosquitto,
    Probe,
    ServerThread,
    release,
    tinyota,
    wait_until,
    write_config,
)
from tests.test_esp_host import HOST, PREREQUISITES, _explain
from tests.test_faults import documented_acl
from tinyota_mqtt.config import load_config
from tinyota_mqtt.core import trust
from tinyota_mqtt.core.httpauth import basic_header
from tinyota_mqtt.core.protocol import Announcement
from tinyota_mqtt.signing import Signer
from tinyota_mqtt.store import Release

SMALL = 128 * 1024
ADMIN = ("admin", "admin-secret")
DEVICE_TIMEOUT = 20.0  # one update on loopback takes well under a second; this is the CI margin


# -- the device program, built once -----------------------------------------------------------------

@pytest.fixture(scope="session")
def device_program() -> Path:
    missing = [f"{what} (apt-get install {package})" for what, present, package in PREREQUISITES if not present()]
    if missing:
        pytest.fail("the ESP host device needs: " + ", ".join(missing), pytrace=False)
    result = subprocess.run(["make", "-C", str(HOST), "-j2", "build/tinyota-device"], capture_output=True,
                            text=True, timeout=600, check=False)
    if result.returncode != 0:
        pytest.fail("make -C esp_client/host build/tinyota-device failed (Debian packages: g++ make pkg-config "
                    "libmosquitto-dev libcurl4-openssl-dev):\n" + _explain(result), pytrace=False)
    return HOST / "build" / "tinyota-device"


# -- device processes ---------------------------------------------------------------------------------

class Device:
    """One tinyota-device process and its state dir (its flash, its NVS, its log)."""

    def __init__(self, program: Path, root: Path, device_id: str, *, broker: str, server: str, prefix: str,
                 version: str, password: str | None = None, platform: str = "esp8266", free_space: int | None = None,
                 mqtt_user: str | None = None, public_key: str | None = None) -> None:
        self.id = device_id
        self.dir = root / device_id
        self.dir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = root / f"{device_id}.stderr"
        # The password by the environment, as a user should give it: the command line shows in `ps`.
        self.env = {**os.environ, "TINYOTA_DEVICE_PASSWORD": password or f"pw-{device_id}"}
        self.args = [str(program), "--id", device_id, "--broker", broker, "--server", server,
                     "--state-dir", str(self.dir), "--version", version,
                     "--platform", platform, "--prefix", prefix, "--progress-interval", "200"]
        if free_space is not None:
            self.args += ["--free-space", str(free_space)]
        if mqtt_user is not None:
            self.args += ["--mqtt-user", mqtt_user]
        if public_key is not None:
            self.args += ["--public-key", public_key]
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_start = 0

    # the process

    def start(self) -> Device:
        assert self.proc is None or self.proc.poll() is not None, f"{self.id} is already running"
        self._log_start = len(self.log())
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=err, env=self.env)
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self) -> int | None:
        """SIGTERM, as a power switch that lets the broker publish the will; the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise AssertionError(f"{self.id} ignored SIGTERM for 10 s\n{self.tail()}") from None
        return self.proc.returncode

    def kill(self) -> None:
        """kill -9: a power cut."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    # its files

    def log(self) -> str:
        try:
            return (self.dir / "device.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_since_start(self) -> str:
        return self.log()[self._log_start:]

    def tail(self, lines: int = 25) -> str:
        text = f"--- {self.id}: device.log (last {lines} lines) ---\n"
        text += "\n".join(self.log().splitlines()[-lines:]) + "\n"
        if self.proc is not None and self.proc.poll() is not None:
            err = self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""
            text += f"--- {self.id} exited with {self.proc.returncode}; stderr tail ---\n{err[-2000:]}\n"
        return text

    def firmware(self) -> bytes | None:
        path = self.dir / "firmware.bin"
        return path.read_bytes() if path.exists() else None

    def flash(self, image: bytes) -> Device:
        """Put an image in the "flash" before the first start, as the factory would."""
        (self.dir / "firmware.bin").write_bytes(image)
        return self

    def files(self) -> set[str]:
        return {p.name for p in self.dir.iterdir()}

    def heard(self) -> list[str]:
        """Every log line about an announcement it received (acted on or not)."""
        return [line for line in self.log().splitlines() if "] announcement " in line]

    def downloads(self) -> list[str]:
        """The update attempts the device started (one log line each), over all its runs."""
        return re.findall(r"update (\S+): downloading ", self.log())


class Fleet:
    """The devices of one test: started on demand, stopped at teardown, quoted on failure."""

    def __init__(self, program: Path, root: Path, broker: str, prefix: str) -> None:
        self.program, self.root, self.broker, self.prefix = program, root, broker, prefix
        # The base URL every device is built with (the server's public_url); the rig sets it.
        self.server_url: str | None = None
        self.devices: dict[str, Device] = {}

    def add(self, device_id: str, version: str, **kw: Any) -> Device:
        """A device that is not started yet (flash it, then start it)."""
        kw.setdefault("platform", "esp32" if device_id.startswith("sensor") else "esp8266")
        server = kw.pop("server", self.server_url)
        assert server, "set fleet.server_url (the server's public_url) before adding devices"
        device = Device(self.program, self.root, device_id, broker=kw.pop("broker", self.broker), server=server,
                        prefix=self.prefix, version=version, **kw)
        self.devices[device_id] = device
        return device

    def start(self, device_id: str, version: str, **kw: Any) -> Device:
        return self.add(device_id, version, **kw).start()

    def explain(self) -> str:
        return "\n".join(d.tail() for d in self.devices.values())

    def wait(self, predicate: Callable[[], Any], what: str, timeout: float = DEVICE_TIMEOUT) -> Any:
        try:
            return wait_until(predicate, timeout, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.explain()}") from None

    def stop_all(self) -> None:
        """SIGTERM every device (kill -9 if it hangs); report a hang only after all are down."""
        problems = []
        for device in self.devices.values():
            try:
                device.terminate()
            except AssertionError as exc:
                problems.append(str(exc))
            finally:
                device.kill()
        assert not problems, "\n".join(problems)


@pytest.fixture
def fleet(device_program: Path, tmp_path: Path, broker: Mosquitto, prefix: str) -> Iterator[Fleet]:
    made = Fleet(device_program, tmp_path / "devices", broker.url, prefix)
    yield made
    made.stop_all()


# -- the server side ----------------------------------------------------------------------------------

class Rig:
    """An in-process server plus helpers to read what it knows."""

    def __init__(self, server: ServerThread, fleet: Fleet, caplog: pytest.LogCaptureFixture) -> None:
        self.server, self.fleet, self.caplog = server, fleet, caplog
        self.config_path = server.config_path

    def view(self, device_id: str) -> dict[str, Any]:
        return self.server.view(device_id)

    def attempt(self, device_id: str) -> dict[str, Any]:
        return self.view(device_id)["attempt"] or {}

    def release(self, image: str, version: str, size: int = SMALL) -> Release:
        return release(self.server.config, image, version, size)

    def blob(self, rel: Release) -> Path:
        return self.server.service.store.path_of(rel)

    def install(self, device_id: str, version: str | None = None) -> dict[str, Any]:
        status, answer = api(self.server.server.port, "POST", f"/api/devices/{device_id}/install",
                             {"version": version} if version else {})
        assert status == 202, answer
        [attempt] = answer["attempts"]
        return dict(attempt)

    def downloads(self, device_id: str) -> list[str]:
        """The server's access-log lines for this device's firmware requests."""
        return [r.getMessage() for r in self.caplog.records
                if r.name == "tinyota.access" and r.getMessage().startswith(f"download device={device_id} ")]

    def downloads_logged(self, device_id: str, count: int) -> list[str]:
        """The access-log lines, once ``count`` are there (a line is written when a response ends)."""
        self.fleet.wait(lambda: len(self.downloads(device_id)) >= count, f"{count} access-log line(s) for {device_id}")
        lines = self.downloads(device_id)
        assert len(lines) == count, lines
        return lines

    def online(self, device: Device, version: str) -> None:
        """Wait until the server has heard the device, live, on ``version``."""
        self.fleet.wait(lambda: (v := self.view(device.id))["online"] and v["installed"] == version,
                        f"{device.id} to report {version} to the server")

    def confirmed(self, device: Device, rel: Release) -> dict[str, Any]:
        """Wait for the attempt to succeed; check the device runs and holds exactly the release."""
        self.fleet.wait(lambda: self.attempt(device.id).get("state") == "succeeded"
                        and self.attempt(device.id).get("version") == rel.version,
                        f"{device.id}'s update to {rel.version} to be confirmed")
        view = self.view(device.id)
        assert view["installed"] == rel.version, f"{view}\n{device.tail()}"
        assert device.firmware() == self.blob(rel).read_bytes(), "flashed bytes differ\n" + device.tail()
        assert device.alive, device.tail()
        assert f"boot: pid {device.proc.pid} running {rel.version} from " in device.log(), device.tail()  # type: ignore[union-attr]
        return view


def api(port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body).encode(),
                     headers={"Authorization": basic_header(*ADMIN), "Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    return resp.status, json.loads(data) if data else None


@pytest.fixture
def rig(tmp_path: Path, broker: Mosquitto, prefix: str, servers: Any, fleet: Fleet,
        caplog: pytest.LogCaptureFixture) -> Rig:
    caplog.set_level(logging.INFO, logger="tinyota.access")
    server: ServerThread = servers(write_config(tmp_path / "server", mqtt=broker.url, prefix=prefix))
    wait_until(lambda: server.service.ready, 10, "the server to connect to mosquitto")
    fleet.server_url = server.config.server.public_url
    return Rig(server, fleet, caplog)


# -- 1. a release reaches exactly its group ------------------------------------------------------------

def test_release_updates_exactly_its_group(rig: Rig, fleet: Fleet) -> None:
    kitchen = [fleet.start("kitchen-1", "1.0.0"), fleet.start("kitchen-2", "1.0.0")]
    sensor = fleet.start("sensor-1", "1.0.0")
    for device in [*kitchen, sensor]:
        rig.online(device, "1.0.0")

    rel = rig.release("kitchen", "1.1.0")  # auto_update: the server announces it on its next tick

    for device in kitchen:
        view = rig.confirmed(device, rel)
        assert view["attempt"]["from_version"] == "1.0.0" and view["state"] == "idle", f"{view}\n{device.tail()}"
        assert device.downloads() == [view["attempt"]["id"]], device.tail()
        [line] = rig.downloads_logged(device.id, 1)
        assert f"status=200 bytes={rel.size} " in line, line
    # The other group heard nothing, fetched nothing, flashed nothing.
    assert sensor.alive and sensor.files() == {"device.log"}, sensor.tail()
    assert sensor.heard() == [] and sensor.downloads() == [], sensor.tail()
    view = rig.view("sensor-1")
    assert view["installed"] == "1.0.0" and view["announced"] is None and view["attempt"] is None, view
    assert rig.downloads("sensor-1") == []


# -- 2. a corrupt image fails cleanly, once ------------------------------------------------------------

def _alter(path: Path) -> None:
    """Flip bytes in the middle of the stored image: same size, the metadata's x-MD5 no longer fits."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 16] = bytes(b ^ 0x5A for b in data[middle:middle + 16])
    path.write_bytes(bytes(data))


def _cut(path: Path) -> None:
    """Lose the second half of the stored image (a disk that lost a tail, a bad copy)."""
    os.truncate(path, path.stat().st_size // 2)


@pytest.mark.parametrize(("corruption", "device_error"), [
    ("altered on disk", "Update error: MD5 Check Failed"),
    ("cut on disk", "Update error: MD5 Check Failed"),
    ("not an image, released with --force", "Verify Bin Header Failed"),
])
def test_corrupt_image_fails_cleanly_and_is_not_retried(rig: Rig, fleet: Fleet, corruption: str,
                                                        device_error: str) -> None:
    old = rig.release("sensor", "1.0.0")
    sensor = fleet.add("sensor-1", "1.0.0").flash(rig.blob(old).read_bytes()).start()
    rig.online(sensor, "1.0.0")
    if corruption == "not an image, released with --force":
        # e.g. the .elf instead of the .bin: refused at release time unless forced.
        junk = rig.server.config.server.store.parent / "junk.bin"
        junk.write_bytes(b"\x7fELF" + os.urandom(SMALL - 4))
        out = tinyota("release", str(junk), "--image", "sensor", "--version", "1.1.0", "--force",
                      "-c", str(rig.config_path))
        assert out.returncode == 0, out.stderr
    else:
        bad = rig.release("sensor", "1.1.0")
        (_alter if corruption == "altered on disk" else _cut)(rig.blob(bad))

    attempt = rig.install("sensor-1")
    assert attempt["version"] == "1.1.0"
    rig.fleet.wait(lambda: rig.attempt("sensor-1").get("state") == "failed", "the attempt to fail")
    failed = rig.attempt("sensor-1")
    assert failed["id"] == attempt["id"] and failed["error"] == device_error, f"{failed}\n{sensor.tail()}"
    view = rig.view("sensor-1")
    assert view["installed"] == "1.0.0" and view["state"] == "failed", f"{view}\n{sensor.tail()}"
    assert view["last_error"] == device_error, view
    rig.downloads_logged("sensor-1", 1)
    # The old image is untouched and still what runs; nothing half-written is left behind.
    assert sensor.alive and sensor.firmware() == rig.blob(old).read_bytes(), sensor.tail()
    assert sensor.files() == {"device.log", "firmware.bin", "attempted-id"}, sensor.tail()
    assert (sensor.dir / "attempted-id").read_text().strip() == attempt["id"]
    assert f"update {attempt['id']} failed: {device_error}" in sensor.log(), sensor.tail()

    # A power cut and a reboot: the retained announcement arrives again, and is not tried again.
    sensor.kill()
    sensor.start()
    fleet.wait(lambda: f"announcement {attempt['id']}: already attempted; not retrying" in sensor.log_since_start(),
               "the restarted device to see the same announcement and decline it")
    assert "running 1.0.0 from" in sensor.log_since_start(), sensor.tail()
    rig.online(sensor, "1.0.0")
    assert sensor.downloads() == [attempt["id"]], sensor.tail()
    assert len(rig.downloads("sensor-1")) == 1, rig.downloads("sensor-1")
    after = rig.attempt("sensor-1")
    assert after["state"] == "failed" and after["id"] == attempt["id"], after
    assert sensor.firmware() == rig.blob(old).read_bytes(), sensor.tail()


# -- 3. offline at release time ------------------------------------------------------------------------

def test_device_offline_at_release_updates_when_it_comes_back(rig: Rig, fleet: Fleet) -> None:
    kitchen = fleet.start("kitchen-1", "1.0.0")
    rig.online(kitchen, "1.0.0")
    assert kitchen.terminate() == 0  # SIGTERM: exits 0 without DISCONNECT, so the will says offline
    fleet.wait(lambda: rig.view("kitchen-1")["online"] is False, "the server to see kitchen-1 go offline")

    rel = rig.release("kitchen", "1.1.0")
    fleet.wait(lambda: rig.attempt("kitchen-1").get("state") == "pending", "the announcement")
    assert rig.downloads("kitchen-1") == []

    kitchen.start()  # same state dir: the retained announcement is waiting on the broker
    view = rig.confirmed(kitchen, rel)
    assert view["online"] is True and view["attempt"]["from_version"] == "1.0.0", view
    assert len(kitchen.downloads()) == 1, kitchen.tail()
    rig.downloads_logged("kitchen-1", 1)


# -- 4. already on that version: nothing is downloaded -------------------------------------------------

def test_no_download_when_already_on_that_version(rig: Rig, fleet: Fleet) -> None:
    # kitchen-2 runs 1.1.0 and says so before the release: the server has nothing to announce.
    k2 = fleet.start("kitchen-2", "1.1.0")
    rig.online(k2, "1.1.0")
    rel = rig.release("kitchen", "1.1.0")
    # kitchen-1 has never been heard of, so it is announced 1.1.0; it then boots on 1.1.0.
    fleet.wait(lambda: rig.attempt("kitchen-1").get("state") == "pending", "the announcement to kitchen-1")
    k1 = fleet.start("kitchen-1", "1.1.0")
    attempt_id = rig.attempt("kitchen-1")["id"]
    fleet.wait(lambda: f"announcement {attempt_id}: already running 1.1.0" in k1.log(),
               "kitchen-1 to answer the announcement with 'already running'")
    fleet.wait(lambda: rig.attempt("kitchen-1").get("state") == "succeeded", "kitchen-1's attempt to close")
    view = rig.view("kitchen-1")
    assert view["installed"] == "1.1.0" and view["state"] == "idle" and view["target"] == rel.version, view
    assert view["attempt"]["id"] == attempt_id and view["attempt"]["from_version"] is None, view
    # Nothing fetched, nothing flashed, nothing even attempted (the attempt store is empty).
    assert k1.downloads() == [] and k1.files() == {"device.log"}, k1.tail()
    assert rig.downloads("kitchen-1") == []
    k2_view = rig.view("kitchen-2")
    assert k2_view["attempt"] is None and k2_view["announced"] is None and k2_view["target"] == "1.1.0", k2_view
    assert k2.heard() == [] and k2.files() == {"device.log"}, k2.tail()
    assert rig.downloads("kitchen-2") == []


# -- 5. rollback -------------------------------------------------------------------------------------

def test_rollback_to_an_older_release(rig: Rig, fleet: Fleet) -> None:
    old = rig.release("sensor", "1.0.0")
    new = rig.release("sensor", "1.1.0")
    sensor = fleet.add("sensor-1", "1.0.0").flash(rig.blob(old).read_bytes()).start()
    rig.online(sensor, "1.0.0")

    up = rig.install("sensor-1")  # the API, default: the latest release
    assert up["version"] == "1.1.0"
    rig.confirmed(sensor, new)

    out = tinyota("install", "sensor-1", "--version", "1.0.0", "-c", str(rig.config_path))
    assert out.returncode == 0 and "announced 1.0.0 to sensor-1" in out.stdout, out.stdout + out.stderr
    view = rig.confirmed(sensor, old)
    assert view["attempt"]["from_version"] == "1.1.0" and view["attempt"]["id"] != up["id"], view
    assert "1.1.0 -> 1.0.0 (rollback); queued" in sensor.log(), sensor.tail()
    assert len(sensor.downloads()) == 2, sensor.tail()
    rig.downloads_logged("sensor-1", 2)


# -- 6. not enough free space ------------------------------------------------------------------------

def test_too_little_free_space_is_refused_by_the_server(rig: Rig, fleet: Fleet) -> None:
    small = fleet.start("kitchen-1", "1.0.0", free_space=100_000)
    roomy = fleet.start("kitchen-2", "1.0.0")
    rig.online(small, "1.0.0")
    rig.online(roomy, "1.0.0")
    rel = rig.release("kitchen", "1.1.0", 256 * 1024)
    reason = f"not enough free space: image is {rel.size} bytes, device has 100000"

    rig.confirmed(roomy, rel)
    fleet.wait(lambda: rig.attempt("kitchen-1").get("state") == "failed", "kitchen-1's attempt to fail")
    attempt = rig.attempt("kitchen-1")
    assert attempt["error"] == reason, attempt
    [line] = rig.downloads_logged("kitchen-1", 1)
    assert "status=403" in line, line
    fleet.wait(lambda: "failed: Forbidden (403)" in small.log(), "kitchen-1 to report the refusal")
    fleet.wait(lambda: rig.view("kitchen-1")["state"] == "failed", "kitchen-1's failed status")
    assert small.alive and small.files() == {"device.log", "attempted-id"}, small.tail()
    rig.server.call(rig.server.service.registry.flush)
    views = {v["id"]: v for v in json.loads(tinyota("status", "--json", "-c", str(rig.config_path)).stdout)}
    seen = views["kitchen-1"]
    assert seen["installed"] == "1.0.0" and seen["attempt"]["state"] == "failed", seen
    assert seen["attempt"]["error"] == reason, seen
    # The device only knows "Forbidden (403)"; the server knows why, and that must not be lost.
    assert seen["last_error"] == f"Forbidden (403): {reason}", seen
    assert rig.view("kitchen-1")["last_error"] == f"Forbidden (403): {reason}"


# -- 7. the server dies mid-download ------------------------------------------------------------------

class GatedRelay:
    """A TCP relay in front of the server that holds the first response after ``hold_after`` bytes.

    The host device reads at loopback speed, so even 16 MiB are gone before a test can react.
    Devices reach the server through this relay (``server.public_url`` points at it), which makes
    "the server died mid-download" a fact rather than a race: the first download stops after
    ``hold_after`` bytes until ``open()``. Its socket towards the server has a small fixed receive
    buffer, so what the kernel can still deliver after the server dies stays far below the image.
    """

    def __init__(self, upstream_port: int, hold_after: int) -> None:
        self.upstream_port, self.hold_after = upstream_port, hold_after
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.held = threading.Event()
        self.gate = threading.Event()
        self.relayed: list[int] = []  # bytes sent to the client, per connection
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def open(self) -> None:
        self.gate.set()

    def close(self) -> None:
        self.gate.set()
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                index = len(self.relayed)
                self.relayed.append(0)
            threading.Thread(target=self._relay, args=(client, index), daemon=True).start()

    def _relay(self, client: socket.socket, index: int) -> None:
        upstream = socket.socket()
        upstream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        try:
            upstream.connect(("127.0.0.1", self.upstream_port))
        except OSError:
            client.close()
            return

        def requests() -> None:
            try:
                while data := client.recv(65536):
                    upstream.sendall(data)
            except OSError:
                pass

        threading.Thread(target=requests, daemon=True).start()
        try:
            while True:
                if index == 0 and self.relayed[0] >= self.hold_after and not self.gate.is_set():
                    self.held.set()
                    self.gate.wait()
                data = upstream.recv(65536)
                if not data:
                    break
                client.sendall(data)
                self.relayed[index] += len(data)
        except OSError:
            pass
        finally:
            for sock in (upstream, client):  # shutdown, not just close: wakes the other thread's recv
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


def test_server_killed_mid_download_then_reannounce_completes(tmp_path: Path, broker: Mosquitto, prefix: str,
                                                              processes: Any, fleet: Fleet) -> None:
    config_path = write_config(tmp_path / "server", mqtt=broker.url, prefix=prefix)
    port = int(re.search(r"port: (\d+)", config_path.read_text()).group(1))  # type: ignore[union-attr]
    relay = GatedRelay(port, hold_after=1024 * 1024)
    try:
        config_path.write_text(config_path.read_text().replace(
            f"public_url: http://127.0.0.1:{port}", f"public_url: http://127.0.0.1:{relay.port}"))
        config = load_config(config_path)
        fleet.server_url = config.server.public_url  # the relay: the device never sees the real port
        old = release(config, "sensor", "1.0.0", SMALL)
        big = release(config, "sensor", "2.0.0", 16 * 1024 * 1024)
        old_bytes = (config.server.store / "sensor" / old.file).read_bytes()
        server = processes(config_path)

        def device() -> dict[str, Any]:
            status, view = api(port, "GET", "/api/devices/sensor-1")
            assert status == 200, view
            return dict(view)

        sensor = fleet.add("sensor-1", "1.0.0", free_space=64 * 1024 * 1024).flash(old_bytes).start()
        fleet.wait(lambda: device()["online"] and device()["installed"] == "1.0.0", "sensor-1 to report 1.0.0")
        status, answer = api(port, "POST", "/api/devices/sensor-1/install", {})
        assert status == 202, answer
        first = answer["attempts"][0]["id"]

        fleet.wait(relay.held.is_set, "the first MiB of the download to pass the relay")
        fleet.wait(lambda: (device()["attempt"] or {}).get("state") == "downloading",
                   "the server to show the download")
        server.kill()  # kill -9 with 15 MiB still to send
        relay.open()  # what the dead server's kernel still had goes through, then the connection ends
        fleet.wait(lambda: f"update {first} failed: " in sensor.log(), "the device to give up on the download")
        assert relay.relayed[0] < big.size, "the relay passed the whole image; the kill came too late"
        assert f"update {first} failed: Update error: Stream Read Timeout" in sensor.log(), sensor.tail()
        assert "http: body ended after " in sensor.log(), sensor.tail()
        # Failed cleanly: the old image stays, nothing partial is left, it runs on.
        assert sensor.alive and sensor.firmware() == old_bytes, sensor.tail()
        assert sensor.files() == {"device.log", "firmware.bin", "attempted-id"}, sensor.tail()

        server = processes(config_path)  # same state file; reads the device's retained "failed"
        fleet.wait(lambda: (device()["attempt"] or {}).get("state") == "failed", "the restarted server to "
                   "record the failure")
        view = device()
        assert view["attempt"]["id"] == first and "Stream Read Timeout" in view["attempt"]["error"], view
        assert view["installed"] == "1.0.0", view
        assert sensor.downloads() == [first], sensor.tail()  # the same id is never tried twice

        status, answer = api(port, "POST", "/api/devices/sensor-1/install", {})
        assert status == 202, answer
        second = answer["attempts"][0]["id"]
        assert second != first
        fleet.wait(lambda: (device()["attempt"] or {}).get("state") == "succeeded", "the re-announced update",
                   timeout=60)
        view = device()
        assert view["attempt"]["id"] == second and view["installed"] == "2.0.0", f"{view}\n{sensor.tail()}"
        assert sensor.firmware() == (config.server.store / "sensor" / big.file).read_bytes(), sensor.tail()
        assert sensor.downloads() == [first, second], sensor.tail()
        assert sensor.alive, sensor.tail()
        assert not any("Traceback" in line for line in server.output), "".join(server.output)
    finally:
        relay.close()


# -- 8. a broker with the documented ACL --------------------------------------------------------------

def test_update_through_the_documented_acl(tmp_path: Path, prefix: str, servers: Any, fleet: Fleet) -> None:
    mosq = Mosquitto(tmp_path / "mosq", users={"tinyota": "srv-pw", "kitchen-1": "pw-kitchen-1"},
                     acl=documented_acl(prefix)).start()
    try:
        text = write_config(tmp_path / "server", mqtt=mosq.url, prefix=prefix).read_text().replace(
            f"  client_id: tinyota-{prefix}", f"  client_id: tinyota-{prefix}\n  username: tinyota\n  password: srv-pw")
        (tmp_path / "server" / "config.yaml").write_text(text)
        server: ServerThread = servers(tmp_path / "server" / "config.yaml")
        wait_until(lambda: server.service.ready, 10, "the server to log in")
        fleet.broker = mosq.url
        fleet.server_url = server.config.server.public_url
        kitchen = fleet.start("kitchen-1", "1.0.0")  # MQTT user = its id, password = its HTTP password
        fleet.wait(lambda: server.view("kitchen-1")["installed"] == "1.0.0", "kitchen-1's status through the ACL")

        rel = release(server.config, "kitchen", "1.1.0", SMALL)
        fleet.wait(lambda: (server.view("kitchen-1")["attempt"] or {}).get("state") == "succeeded",
                   "the update through the ACL")
        assert server.view("kitchen-1")["installed"] == "1.1.0", kitchen.tail()
        assert kitchen.firmware() == server.service.store.path_of(rel).read_bytes(), kitchen.tail()
        assert "not authorized" not in kitchen.log().lower(), kitchen.tail()
        # Its last will (availability) is allowed too.
        assert kitchen.terminate() == 0
        fleet.wait(lambda: server.view("kitchen-1")["online"] is False, "kitchen-1's will through the ACL")
    finally:
        fleet.stop_all()
        if "server" in locals():
            server.stop()
        mosq.stop()


# -- 9. forged announcements: a foreign host, a changed byte, a replayed signature --------------------
# Anyone may publish on an anonymous broker. The attacker's HTTP server (a Trap, on loopback,
# counting connections) must receive nothing; the device keeps its version and says why.

class Trap:
    """The attacker's HTTP server: accepts on loopback, records every byte a client sends, answers 200."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.received: list[bytes] = []
        self.connected = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def url(self, path: str = "/fw/kitchen/6.6.6.bin") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connected.set()
            with client:
                client.settimeout(5)
                try:
                    self.received.append(client.recv(65536))
                    client.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n\xe9")
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def trap() -> Iterator[Trap]:
    made = Trap()
    yield made
    made.close()


def forged(url: str, *, attempt: str = "forged-1", version: str = "6.6.6") -> bytes:
    return json.dumps({"id": attempt, "version": version, "url": url, "size": SMALL,
                       "md5": "0" * 32, "sha256": "0" * 64}).encode()


def status_of(probe: Probe, topic: str, attempt: str) -> dict[str, Any]:
    """The device's newest status about ``attempt`` (waits for one)."""
    def about(msg: Any) -> bool:
        return bool(msg.payload) and json.loads(msg.payload).get("id") == attempt

    return dict(json.loads(probe.wait_for(topic, about, timeout=DEVICE_TIMEOUT).payload))


def test_forged_announcement_to_a_foreign_host_gets_nothing_from_the_device(
        rig: Rig, fleet: Fleet, broker: Mosquitto, prefix: str, probes: Any, trap: Trap) -> None:
    kitchen = fleet.start("kitchen-1", "1.0.0")
    rig.online(kitchen, "1.0.0")
    probe = probes(broker.url).subscribe(f"{prefix}/kitchen-1/status")
    attacker = probes(broker.url)
    port = rig.server.config.server.public_url.rsplit(":", 1)[1]
    credentials = 'refused: "url" carries credentials; devices use their own'
    tricks = [(trap.url(), trust.NOT_OUR_SERVER),  # the server's host, another port
              (f"http://localhost:{trap.port}/fw/kitchen/6.6.6.bin", trust.NOT_OUR_SERVER),  # another host
              (f"http://127.0.0.1:{port}@127.0.0.1:{trap.port}/fw/k.bin", credentials)]  # "server:8000@evil"
    for n, (url, reason) in enumerate(tricks):
        attacker.publish(f"{prefix}/kitchen-1/update", forged(url, attempt=f"forged-{n}"), retain=True)
        body = status_of(probe, f"{prefix}/kitchen-1/status", f"forged-{n}")
        assert body["state"] == "failed" and body["version"] == "1.0.0", body
        assert body["error"] == reason, body
        assert f"announcement forged-{n} refused" in kitchen.log(), kitchen.tail()  # logged before published
    # Nothing reached the attacker: not a connection, let alone a password.
    assert not trap.connected.is_set() and trap.received == []
    assert kitchen.downloads() == [] and "attempted-id" not in kitchen.files(), kitchen.tail()
    assert kitchen.alive and kitchen.firmware() is None, kitchen.tail()
    assert rig.view("kitchen-1")["installed"] == "1.0.0"


@pytest.fixture
def signed_rig(tmp_path: Path, broker: Mosquitto, prefix: str, servers: Any, fleet: Fleet,
               caplog: pytest.LogCaptureFixture) -> tuple[Rig, str, Signer]:
    """A server with server.signing_key; the devices' public key as `tinyota keygen` printed it."""
    key = tmp_path / "signing.key"
    out = tinyota("keygen", str(key))
    assert out.returncode == 0, out.stderr
    public = out.stdout.split("for devices: ")[1].strip()
    config = write_config(tmp_path / "server", mqtt=broker.url, prefix=prefix)
    config.write_text(config.read_text().replace("  admin:", f"  signing_key: {key}\n  admin:"))
    server: ServerThread = servers(config)
    wait_until(lambda: server.service.ready, 10, "the server to connect to mosquitto")
    fleet.server_url = server.config.server.public_url
    return Rig(server, fleet, caplog), public, Signer.load(key)


def test_signed_announcement_with_one_byte_changed_is_refused_then_the_real_one_succeeds(
        signed_rig: tuple[Rig, str, Signer], fleet: Fleet, broker: Mosquitto, prefix: str, probes: Any) -> None:
    rig, public, signer = signed_rig
    rel = rig.release("sensor", "1.1.0")  # sensors update on command: the server announces nothing yet
    sensor = fleet.start("sensor-1", "1.0.0", public_key=public)
    rig.online(sensor, "1.0.0")
    assert "acts only on signed announcements" in sensor.log(), sensor.tail()
    status = probes(broker.url).subscribe(f"{prefix}/sensor-1/status")

    # Signed with the server's real key for this device and release; then one byte of "size" changed.
    ann = Announcement(id="crafted-1", version=rel.version,
                       url=f"{rig.server.config.server.public_url}/fw/sensor/{rel.version}.bin", size=rel.size,
                       md5=rel.md5, sha256=rel.sha256, image="sensor", device="sensor-1")
    good = dataclasses.replace(ann, sig=signer.sign(ann.manifest())).payload()
    tampered = good.replace(f'"size":{rel.size}'.encode(), f'"size":{rel.size + 1}'.encode())
    assert len(tampered) == len(good) and sum(a != b for a, b in zip(good, tampered, strict=True)) == 1
    probes(broker.url).publish(f"{prefix}/sensor-1/update", tampered, retain=True)
    refused = status_of(status, f"{prefix}/sensor-1/status", "crafted-1")
    assert refused["state"] == "failed" and refused["error"] == trust.BAD_SIGNATURE, refused
    assert sensor.downloads() == [] and rig.downloads("sensor-1") == [], sensor.tail()
    assert "attempted-id" not in sensor.files(), sensor.tail()

    # The server's own, signed announcement: verified, downloaded, flashed, confirmed.
    attempt = rig.install("sensor-1")
    rig.confirmed(sensor, rel)
    assert sensor.downloads() == [attempt["id"]], sensor.tail()


def test_valid_signature_replayed_to_another_device_is_refused(
        signed_rig: tuple[Rig, str, Signer], fleet: Fleet, broker: Mosquitto, prefix: str, probes: Any) -> None:
    rig, public, _ = signed_rig
    kitchen = fleet.start("kitchen-1", "1.0.0", public_key=public)
    loner = fleet.start("loner", "1.0.0", public_key=public)  # in no group: the server never announces to it
    rig.online(kitchen, "1.0.0")
    rig.online(loner, "1.0.0")
    updates = probes(broker.url).subscribe(f"{prefix}/kitchen-1/update")
    rel = rig.release("kitchen", "1.1.0")
    real = updates.wait_for(f"{prefix}/kitchen-1/update").payload
    rig.confirmed(kitchen, rel)  # the announcement and its signature are good: kitchen-1 acted on it

    attacker = probes(broker.url)
    status = probes(broker.url).subscribe(f"{prefix}/loner/status")
    attacker.publish(f"{prefix}/loner/update", real, retain=True)  # copied to another device's topic
    attempt_id = json.loads(real)["id"]
    refused = status_of(status, f"{prefix}/loner/status", attempt_id)
    assert refused["state"] == "failed" and refused["error"] == trust.BAD_SIGNATURE, refused
    # An unsigned announcement of the same release on the real server: refused as unsigned.
    attacker.publish(f"{prefix}/loner/update", forged(json.loads(real)["url"], attempt="unsigned-1"), retain=True)
    refused = status_of(status, f"{prefix}/loner/status", "unsigned-1")
    assert refused["error"] == trust.MISSING_SIGNATURE, refused
    assert loner.downloads() == [] and loner.firmware() is None, loner.tail()
    assert rig.downloads("loner") == []
