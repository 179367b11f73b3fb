"""The servers under test, each a child process on loopback that the bench starts and stops.

- ``Nginx``: the Debian package, one worker, sendfile on, auth_basic: the practical speed limit.
- ``Stdlib``: bench/stdlib_server.py, one thread or a thread per request: what scripts do.
- ``Tinyota``: ``python -m tinyota_mqtt serve -c <generated config>`` with auth, access log and
  Home Assistant on, talking to the bench's own ``Mosquitto``.

All of them serve the very same file (tinyota's store blob) at the same URL path,
``/fw/fleet/<version>.bin``, to the same device accounts.
"""

from __future__ import annotations

import asyncio
import base64
import getpass
import hashlib
import http.client
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.util import cpu_seconds, die_with_parent, free_port, http_status, rss_of, wait_until
from tinyota_mqtt.core.httpauth import basic_header
from tinyota_mqtt.core.image import make_test_image
from tinyota_mqtt.store import FirmwareStore

IMAGE = "fleet"
ADMIN = ("admin", "bench-admin-secret")


@dataclass(frozen=True)
class Device:
    id: str
    password: str

    @property
    def authorization(self) -> str:
        return basic_header(self.id, self.password)


def fleet(count: int) -> list[Device]:
    return [Device(f"dev-{i:04d}", f"pw-dev-{i:04d}") for i in range(1, count + 1)]


@dataclass(frozen=True)
class Firmware:
    version: str
    size: int
    md5: str
    path: Path  # the store's blob: every peer serves this same file

    @property
    def url_path(self) -> str:
        return f"/fw/{IMAGE}/{self.version}.bin"


def image_bytes(version: str, size: int) -> bytes:
    # Random filler, so nothing along the way can get away with compressing or deduplicating it.
    return make_test_image(version, size, fill=os.urandom(64 * 1024))


class Peer:
    """A server process. Subclasses say how to start it and how to tell that it answers."""

    name = "peer"
    label = "peer"

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.cpu_s: float | None = None  # CPU seconds over its whole life, known once stopped

    def command(self) -> list[str]:
        raise NotImplementedError

    def answering(self) -> bool:
        return http_status(self.port, "/") is not None

    def start(self, timeout: float = 20.0) -> float:
        """Start the process; return the seconds until it answered HTTP."""
        log = open(self.dir / "server.log", "ab")  # noqa: SIM115 - the child keeps writing to it
        started = time.perf_counter()
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.dir,
                                     preexec_fn=die_with_parent)
        log.close()

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                tail = (self.dir / "server.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{self.label} exited with {self.proc.returncode}:\n{tail}")
            return self.answering()

        wait_until(up, timeout, f"{self.label} to answer", interval=0.002)
        return time.perf_counter() - started

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.cpu_s = self.cpu()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss(self) -> int:
        return rss_of(self.pid) if self.proc is not None else 0

    def cpu(self) -> float:
        """CPU seconds used so far (user + system, all threads and child processes)."""
        return cpu_seconds(self.pid) if self.proc is not None else 0.0

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- mosquitto ------------------------------------------------------------------------------------

class Mosquitto(Peer):
    """A broker of our own, shaped like the tests' one: defaults, anonymous, loopback only."""

    name = label = "mosquitto"

    def command(self) -> list[str]:
        conf = self.dir / "mosquitto.conf"
        # Started as root, mosquitto would drop to the 'mosquitto' user; staying who we are keeps
        # the work directory private. Everything else is mosquitto's default, as in a home lab.
        conf.write_text("\n".join([
            f"user {getpass.getuser()}", f"listener {self.port} 127.0.0.1", "persistence false",
            "allow_anonymous true", "log_dest stderr", "log_type error", "log_type warning", ""]))
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        return [binary, "-c", str(conf)]

    def answering(self) -> bool:
        import socket

        try:
            socket.create_connection(("127.0.0.1", self.port), 0.2).close()
            return True
        except OSError:
            return False

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"


# -- tinyota --------------------------------------------------------------------------------------

CONFIG = """\
# Generated by the bench: the sample config.yaml's shape, with a fleet of {count} devices.
server:
  host: 127.0.0.1
  port: {port}
  public_url: http://127.0.0.1:{port}
  store: firmware
  state: state.sqlite
  access_log: true
  admin: {{username: {admin}, password: {admin_password}}}
  limits: {{max_connections: 20000, max_connections_per_address: 1000000}}  # all from 127.0.0.1
mqtt:
  url: {mqtt}
  prefix: {prefix}
  client_id: tinyota-{prefix}
homeassistant:
  enabled: true
  discovery_prefix: {prefix}-ha
  status_topic: {prefix}-ha/status
images:
  {image}: {{platform: esp8266, description: bench fleet}}
groups:
  {image}: {{image: {image}, auto_update: {auto}, attempt_timeout: 10m}}
devices:
"""


class Tinyota(Peer):
    name = "tinyota"
    label = "tinyota"

    def __init__(self, workdir: Path, devices: Sequence[Device], mqtt_url: str, *, prefix: str = "bench",
                 auto_update: bool = False, rollout: str | None = None) -> None:
        super().__init__(workdir)
        self.devices = list(devices)
        self.prefix = prefix
        self.mqtt_url = mqtt_url
        self.config = self.dir / "config.yaml"
        text = CONFIG.format(count=len(self.devices), port=self.port, admin=ADMIN[0], admin_password=ADMIN[1],
                             mqtt=mqtt_url, prefix=prefix, image=IMAGE, auto="true" if auto_update else "false")
        if rollout is not None:  # a YAML flow mapping: the group's rollout policy
            text = text.replace("attempt_timeout: 10m}", f"attempt_timeout: 10m, rollout: {rollout}}}")
        text += "".join(f"  {d.id}: {{group: {IMAGE}, password: {d.password}}}\n" for d in self.devices)
        self.config.write_text(text)
        self.store = FirmwareStore(self.dir / "firmware")

    def command(self) -> list[str]:
        return [sys.executable, "-m", "tinyota_mqtt", "serve", "-c", str(self.config)]

    def answering(self) -> bool:
        return http_status(self.port, "/healthz") == 200

    def add_release(self, version: str, size: int) -> Firmware:
        """Put a release in the store directly, as ``tinyota release`` does (server stopped or not)."""
        source = self.dir / f"upload-{version}.bin"
        source.write_bytes(image_bytes(version, size))
        release = self.store.add_file(source, IMAGE, version)
        source.unlink()
        return Firmware(version, release.size, release.md5, self.store.path_of(release))

    def upload_release(self, version: str, size: int) -> Any:
        """Release through the admin API, as an operator's CI would: the server announces at once."""
        data = image_bytes(version, size)
        return self.api("POST", f"/api/releases?image={IMAGE}&version={version}", data)

    def api(self, method: str, path: str, body: bytes | None = None) -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers={"Authorization": basic_header(*ADMIN)})
            response = conn.getresponse()
            raw = response.read()
        finally:
            conn.close()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: {response.status} {raw[:200]!r}")
        return json.loads(raw)

    def wait_mqtt(self, timeout: float = 20.0) -> None:
        wait_until(lambda: self.api("GET", "/healthz").get("mqtt") == "connected", timeout,
                   "tinyota to connect to the broker", interval=0.05)

    def target(self, version: str, devices: Sequence[Device] | None = None) -> None:
        """Install ``version`` on ``devices`` (default: all): tinyota serves a device only its
        target (or the version it runs), so the download scenarios say what each device gets."""
        body = json.dumps({"version": version}).encode()
        if devices is None:
            self.api("POST", f"/api/groups/{IMAGE}/install", body)
            return
        for device in devices:
            self.api("POST", f"/api/devices/{device.id}/install", body)

    async def report_running(self, version: str, devices: Sequence[Device], timeout: float = 30.0) -> None:
        """Report ``version`` for each device, as it would after flashing, and wait until the
        server has confirmed every attempt: a device then runs its target and has no attempt
        open, so downloads in a measurement do not each record one."""
        from bench.mqttlite import MqttLite  # asyncio-only; the rest of this module is not

        host, port = self.mqtt_url.removeprefix("mqtt://").rsplit(":", 1)
        client = await MqttLite(f"{self.prefix}-reporter").connect(host, int(port))
        try:
            status = json.dumps({"state": "idle", "version": version}).encode()
            acks = [client.publish(f"{self.prefix}/{d.id}/status", status, qos=1) for d in devices]
            await asyncio.gather(*(a for a in acks if a is not None))
        finally:
            await client.close()
        deadline = time.monotonic() + timeout
        for device in devices:
            while (self.api("GET", f"/api/devices/{device.id}").get("attempt") or {}).get("state") != "succeeded":
                if time.monotonic() > deadline:
                    raise RuntimeError(f"tinyota did not confirm {device.id} running {version}")
                await asyncio.sleep(0.05)


# -- nginx ----------------------------------------------------------------------------------------

NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile {nofile};
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
{user}
events {{ worker_connections {connections}; }}
http {{
    access_log {dir}/access.log;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        auth_basic "firmware";
        auth_basic_user_file {dir}/htpasswd;
{locations}
    }}
}}
"""


def ssha(password: str) -> str:
    """RFC 2307 {SSHA}: salted SHA-1, one of the schemes nginx's auth_basic_user_file accepts."""
    salt = os.urandom(8)
    return "{SSHA}" + base64.b64encode(hashlib.sha1(password.encode() + salt).digest() + salt).decode()


class Nginx(Peer):
    name = "nginx"
    label = "nginx (1 worker, sendfile)"

    def __init__(self, workdir: Path, devices: Sequence[Device], firmware: Sequence[Firmware]) -> None:
        super().__init__(workdir)
        (self.dir / "tmp").mkdir(exist_ok=True)
        (self.dir / "htpasswd").write_text("".join(f"{d.id}:{ssha(d.password)}\n" for d in devices))
        locations = "".join(
            f'        location = {fw.url_path} {{ alias {fw.path}; add_header x-MD5 "{fw.md5}"; }}\n'
            for fw in firmware)
        # As root, nginx's workers would switch to 'nobody' and could not read the private work
        # directory; 'user root' keeps them who we are (the directive is ignored otherwise).
        user = "user root;" if os.geteuid() == 0 else ""
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]  # what the bench raised it to
        (self.dir / "nginx.conf").write_text(NGINX_CONF.format(
            dir=self.dir, port=self.port, user=user, locations=locations, nofile=nofile, connections=nofile // 2))

    def command(self) -> list[str]:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        return [binary, "-p", str(self.dir), "-e", str(self.dir / "error.log"), "-c", str(self.dir / "nginx.conf")]


def nginx_available() -> bool:
    return shutil.which("nginx") is not None or Path("/usr/sbin/nginx").exists()


# -- the stdlib baseline --------------------------------------------------------------------------

class Stdlib(Peer):
    def __init__(self, workdir: Path, devices: Sequence[Device], firmware: Sequence[Firmware], *,
                 threaded: bool) -> None:
        super().__init__(workdir)
        self.threaded = threaded
        self.name = "stdlib-threaded" if threaded else "stdlib-single"
        self.label = "stdlib ThreadingHTTPServer" if threaded else "stdlib HTTPServer (1 thread)"
        (self.dir / "files.json").write_text(json.dumps(
            {fw.url_path: {"path": str(fw.path), "md5": fw.md5} for fw in firmware}))
        (self.dir / "users.json").write_text(json.dumps({d.id: d.password for d in devices}))

    def command(self) -> list[str]:
        # Run as a file, not ``-m``: it needs only the standard library, and the cwd is the work dir.
        return [sys.executable, str(Path(__file__).with_name("stdlib_server.py")), "--port", str(self.port),
                "--files", str(self.dir / "files.json"), "--users", str(self.dir / "users.json"),
                *(["--threaded"] if self.threaded else [])]
