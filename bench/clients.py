"""HTTP clients that behave like the devices, on one asyncio loop so a thousand cost little.

- ``paced_download``: an ESP8266 on weak Wi-Fi. HTTP/1.0, Basic Auth, the ``x-ESP8266-*`` headers
  ESP8266httpUpdate sends, a small TCP receive window (lwIP's is ~6 KiB), and a reader that takes
  ``len/rate`` seconds to write each chunk to flash before it reads the next one. Stalls are not
  made up for later: a real device cannot read faster than its flash writes.
- ``paced_fleet``: many paced devices at once, split over child processes (``python -m
  bench.clients``, below) when one Python loop cannot keep its devices' pace by itself.
- ``fast_run``: the same request, read as fast as the socket allows (``BufferedProtocol`` straight
  into one reused buffer), by ``concurrency`` workers back to back, ``Connection: close`` each time.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.peers import Device, Firmware
from bench.util import KiB, own_cpu_seconds, raise_fd_limit

HOST = "127.0.0.1"


def esp_request(path: str, device: Device, *, version: str = "0.0.1", free_space: int = 16 * 1024 * 1024) -> bytes:
    """The request ESP8266httpUpdate makes (core 3.x, ``useHTTP10(true)``)."""
    headers = [
        f"GET {path} HTTP/1.0", f"Host: {HOST}", "User-Agent: ESP8266-http-Update", "Connection: close",
        f"Authorization: {device.authorization}",
        "x-ESP8266-Chip-ID: 1234567", "x-ESP8266-STA-MAC: 02:00:00:00:00:01", "x-ESP8266-AP-MAC: 02:00:00:00:00:02",
        f"x-ESP8266-free-space: {free_space}", "x-ESP8266-sketch-size: 400000",
        "x-ESP8266-sketch-md5: 00000000000000000000000000000000", "x-ESP8266-chip-size: 4194304",
        "x-ESP8266-sdk-version: 2.2.2-dev(38a443e)", "x-ESP8266-mode: sketch", f"x-ESP8266-version: {version}",
    ]
    return ("\r\n".join(headers) + "\r\n\r\n").encode()


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


@dataclass
class Download:
    ok: bool = False  # 200, Content-Length honoured, and the MD5 of the bytes is the release's
    status: int | None = None
    received: int = 0
    ttfb: float | None = None  # connect start → first response byte
    seconds: float | None = None  # connect start → last chunk processed
    error: str | None = None


class _PacedDevice(asyncio.Protocol):
    """The download as callbacks: no coroutine per chunk, so a thousand devices stay cheap.

    After each chunk the device "writes it to flash" for len/rate seconds with reading paused, so
    the kernel's small receive window fills and TCP pushes back on the server, as on a real ESP.
    """

    def __init__(self, request: bytes, fw: Firmware, rate: float, result: Download, started: float,
                 opened: asyncio.Event | None) -> None:
        self.loop = asyncio.get_running_loop()
        self.request, self.fw, self.rate, self.result = request, fw, rate, result
        self.started, self.opened = started, opened
        self.head = bytearray()
        self.length = -1
        self.digest = hashlib.md5()
        self.due = 0.0
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[None] = self.loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        result = self.result
        if result.ttfb is None:
            result.ttfb = self.loop.time() - self.started
            if self.opened is not None:
                self.opened.set()
        if result.status is None:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            result.status, headers = _parse_head(bytes(self.head[:end]))
            self.length = int(headers.get("content-length", "-1"))
            if result.status != 200 or self.length != self.fw.size:
                self._finish(f"status {result.status}, Content-Length {self.length}")
                return
            data = bytes(self.head[end + 4:])
            self.due = self.loop.time()
        result.received += len(data)
        self.digest.update(data)
        now = self.loop.time()
        self.due = max(self.due, now) + len(data) / self.rate  # flash time for this chunk
        assert self.transport is not None
        if result.received >= self.length:
            self.loop.call_at(self.due, self._finish, None)
        elif self.due > now:
            self.transport.pause_reading()
            self.loop.call_at(self.due, self._resume)

    def _resume(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def _finish(self, error: str | None) -> None:
        result = self.result
        if not self.done.done():
            result.seconds = self.loop.time() - self.started
            if error is None and result.received != self.length:
                error = f"got {result.received} of {self.length} bytes"
            elif error is None and self.digest.hexdigest() != self.fw.md5:
                error = "MD5 mismatch"
            result.ok, result.error = error is None, error
            self.done.set_result(None)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.result.received < self.length or self.length < 0:
            self._finish(f"connection lost: {exc}" if exc else "connection closed early")


async def paced_download(port: int, fw: Firmware, device: Device, *, rate: float, rcvbuf: int = 8 * KiB,
                         timeout: float = 120.0, opened: asyncio.Event | None = None) -> Download:
    """One device downloading ``fw`` at ``rate`` bytes/s. ``opened`` is set at the first byte."""
    loop = asyncio.get_running_loop()
    result = Download()
    started = loop.time()
    sock = socket.socket()
    # Before connect, so the advertised window starts small, and segments are Wi-Fi sized (lwIP's
    # MSS is 1460) rather than loopback's 64 KiB: with loopback segments the server's send buffer
    # grows to megabytes and swallows a whole image, so the server would never feel the device.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1460)
    sock.setblocking(False)
    device_proto = _PacedDevice(esp_request(fw.url_path, device), fw, rate, result, started, opened)
    transport = None
    try:
        async with asyncio.timeout(timeout):
            await loop.sock_connect(sock, (HOST, port))
            transport, _ = await loop.create_connection(lambda: device_proto, sock=sock)
            await device_proto.done
    except TimeoutError:
        result.error = "timed out"
    except OSError as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        if transport is not None:
            transport.close()
        else:
            sock.close()
    return result


@dataclass
class FleetResult:
    downloads: list[Download]
    seconds: float  # the start signal → the last device done
    client_cpu_s: float  # the clients' own CPU (user + system), every process


async def paced_fleet(port: int, fw: Firmware, devices: Sequence[Device], *, rate: float, timeout: float,
                      processes: int = 1) -> FleetResult:
    """Every device in ``devices`` downloading at once, in this process or split over ``processes``
    children. Each child imports and connects nothing until all are ready, then all start on one
    signal; the fleet's time runs from that signal to the last download's end, on the monotonic
    clock every process shares."""
    if processes <= 1:
        loop = asyncio.get_running_loop()
        cpu = own_cpu_seconds()
        started = loop.time()
        downloads = await asyncio.gather(*(paced_download(port, fw, d, rate=rate, timeout=timeout) for d in devices))
        return FleetResult(list(downloads), loop.time() - started, own_cpu_seconds() - cpu)
    share = -(-len(devices) // processes)
    job = {"port": port, "rate": rate, "timeout": timeout,
           "fw": {"version": fw.version, "size": fw.size, "md5": fw.md5, "path": str(fw.path)}}
    children = []
    try:
        for first in range(0, len(devices), share):
            part = devices[first:first + share]
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.clients", cwd=Path(__file__).resolve().parent.parent,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=2**26)
            assert child.stdin is not None and child.stdout is not None
            child.stdin.write(json.dumps({**job, "devices": [[d.id, d.password] for d in part]}).encode() + b"\n")
            await child.stdin.drain()
            children.append(child)
        for child in children:
            assert child.stdout is not None
            if (await child.stdout.readline()).strip() != b"ready":
                raise RuntimeError("a client process did not start")
        started = time.monotonic()
        for child in children:
            assert child.stdin is not None
            child.stdin.write(b"go\n")
        for child in children:
            assert child.stdin is not None
            await child.stdin.drain()
        reports = []
        for child in children:
            assert child.stdout is not None
            reports.append(json.loads(await child.stdout.readline()))
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
            await child.wait()
    downloads = [Download(**d) for r in reports for d in r["downloads"]]
    return FleetResult(downloads, max(r["ended"] for r in reports) - started, sum(r["cpu_s"] for r in reports))


def _child() -> None:
    """``python -m bench.clients``: one share of a paced fleet (see ``paced_fleet``)."""
    raise_fd_limit()
    job = json.loads(sys.stdin.readline())
    fw = Firmware(job["fw"]["version"], job["fw"]["size"], job["fw"]["md5"], Path(job["fw"]["path"]))
    devices = [Device(i, pw) for i, pw in job["devices"]]
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return

    async def run() -> list[Download]:
        return list(await asyncio.gather(*(
            paced_download(job["port"], fw, d, rate=job["rate"], timeout=job["timeout"]) for d in devices)))

    cpu = own_cpu_seconds()
    downloads = asyncio.run(run())
    print(json.dumps({"downloads": [asdict(d) for d in downloads], "ended": time.monotonic(),
                      "cpu_s": own_cpu_seconds() - cpu}), flush=True)


# -- fast clients ---------------------------------------------------------------------------------

class _Sink(asyncio.BufferedProtocol):
    """Reads a whole HTTP/1.0 response into one reused buffer; counts, optionally hashes."""

    def __init__(self, request: bytes, verify: bool) -> None:
        self.request = request
        self.buffer = memoryview(bytearray(256 * KiB))
        self.head = bytearray()
        self.status: int | None = None
        self.length = -1
        self.body = 0
        self.md5 = hashlib.md5() if verify else None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.request)  # type: ignore[attr-defined]

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        data = self.buffer[:nbytes]
        if self.status is None:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            self.status, headers = _parse_head(bytes(self.head[:end]))
            self.length = int(headers.get("content-length", "-1"))
            data = memoryview(self.head)[end + 4:]
        self.body += len(data)
        if self.md5 is not None:
            self.md5.update(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


@dataclass
class FastResult:
    requests: int = 0
    ok: int = 0
    bytes: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds else 0.0

    @property
    def requests_per_s(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


async def fast_get(port: int, fw: Firmware, device: Device, *, verify: bool = False) -> tuple[bool, int, str | None]:
    loop = asyncio.get_running_loop()
    sink = _Sink(esp_request(fw.url_path, device), verify)
    try:
        async with asyncio.timeout(60):
            await loop.create_connection(lambda: sink, HOST, port)
            await sink.done
    except (OSError, TimeoutError) as exc:
        return False, 0, f"{type(exc).__name__}: {exc}"
    ok = sink.status == 200 and sink.body == sink.length == fw.size
    if ok and sink.md5 is not None and sink.md5.hexdigest() != fw.md5:
        return False, sink.body, "MD5 mismatch"
    return ok, sink.body, None if ok else f"status {sink.status}, {sink.body} of {sink.length} bytes"


async def fast_run(port: int, fw: Firmware, devices: Sequence[Device], *, concurrency: int, requests: int,
                   time_cap: float) -> FastResult:
    """``requests`` downloads by ``concurrency`` back-to-back workers (fewer if ``time_cap`` passes).

    The first download of the run is MD5-checked; the rest are checked for status and length only,
    so hashing does not slow the client down against the fastest server.
    """
    loop = asyncio.get_running_loop()
    result = FastResult()
    deadline = loop.time() + time_cap
    issued = 0

    async def worker() -> None:
        nonlocal issued
        while issued < requests and loop.time() < deadline:
            issued += 1
            ok, got, error = await fast_get(port, fw, devices[issued % len(devices)], verify=issued == 1)
            result.requests += 1
            result.bytes += got if ok else 0
            result.ok += ok
            if error and len(result.errors) < 5:
                result.errors.append(error)

    started = loop.time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.seconds = loop.time() - started
    return result


if __name__ == "__main__":
    _child()
