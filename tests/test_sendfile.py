"""Plain-HTTP downloads go by the kernel's sendfile: which path is taken, and its edges.

The server is real (its own loop thread, real sockets, real files). ``os.sendfile`` is wrapped by
a spy that calls the real one and records what each call did, so a test sees the path taken and
the kernel's own answers. Two answers the kernel gives rarely on loopback are made on demand:
a short send (the spy asks the kernel for less than the server did, as a nearly full socket
buffer would make it take less), and EAGAIN from a socket epoll had called writable (another
writer, or the buffer shrinking under memory pressure, can do that; Linux's sendfile(2) page
lists EAGAIN for a non-blocking socket that would block).
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ServerThread, release, wait_until, write_config
from tests.test_http import HTTP_ONLY, request, stored
from tinyota_mqtt.core.httpauth import basic_header
from tinyota_mqtt.http.transfer import SENDFILE_BLOCK

MiB = 1024 * 1024


class SendfileSpy:
    """``os.sendfile`` as the server calls it, recorded: (asked, sent or the exception's name).

    ``cap``: ask the kernel for at most this many bytes per call. ``eagain_every``: every n-th
    call raises BlockingIOError without sending, as the kernel does for a socket that is full.
    """

    def __init__(self, real: Callable[..., int]) -> None:
        self.real = real
        self.cap: int | None = None
        self.eagain_every: int | None = None
        self.calls: list[tuple[int, int | str]] = []
        self.lock = threading.Lock()

    def __call__(self, out_fd: int, in_fd: int, offset: int, count: int) -> int:
        asked = count if self.cap is None else min(count, self.cap)
        if self.eagain_every and (len(self.calls) + 1) % self.eagain_every == 0:
            with self.lock:
                self.calls.append((asked, "BlockingIOError"))
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
        try:
            sent = self.real(out_fd, in_fd, offset, asked)
        except OSError as exc:
            with self.lock:
                self.calls.append((asked, type(exc).__name__))
            raise
        with self.lock:
            self.calls.append((asked, sent))
        return sent

    @property
    def sent(self) -> int:
        return sum(n for _, n in list(self.calls) if isinstance(n, int))

    def count(self, outcome: type[BaseException] | None = None) -> int:
        calls = list(self.calls)
        if outcome is None:
            return len(calls)
        return sum(1 for _, n in calls if n == outcome.__name__)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> SendfileSpy:
    recorder = SendfileSpy(os.sendfile)
    monkeypatch.setattr(os, "sendfile", recorder)
    return recorder


def limited(tmp_path: Path, servers: Any, limits: str) -> ServerThread:
    text = write_config(tmp_path).read_text().replace("  admin:", f"  limits: {limits}\n  admin:")
    (tmp_path / "config.yaml").write_text(text)
    srv: ServerThread = servers(tmp_path / "config.yaml", HTTP_ONLY)
    return srv


def start_download(srv: ServerThread, version: str) -> socket.socket:
    """An HTTP/1.0 download with a device's small receive window, its status line read, then left
    unread. Wi-Fi sized segments as well: with loopback's 64 KiB ones a window this small only
    reopens by TCP's zero-window probes, seconds apart."""
    auth = basic_header("kitchen-1", "pw-kitchen-1")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1460)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", srv.server.port))
    sock.sendall(f"GET /fw/kitchen/{version}.bin HTTP/1.0\r\nAuthorization: {auth}\r\n\r\n".encode())
    assert sock.recv(12) == b"HTTP/1.1 200"
    return sock


def read_to_end(sock: socket.socket) -> bytes:
    sock.settimeout(30)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def access_line(caplog: pytest.LogCaptureFixture, version: str) -> str | None:
    return next((r.getMessage() for r in caplog.records
                 if r.name == "tinyota.access" and f"version={version} " in r.getMessage()), None)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_plain_http_body_is_sent_by_the_kernel(tmp_path: Path, servers: Any, spy: SendfileSpy,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tinyota.access")
    srv = servers(write_config(tmp_path), HTTP_ONLY)
    rel = release(srv.config, "kitchen", "1.0.0", 3 * MiB + 123)
    resp, body = request(srv, "GET", "/fw/kitchen/1.0.0.bin")
    assert resp.status == 200 and hashlib.md5(body).hexdigest() == rel.md5
    assert spy.sent == rel.size  # every body byte went through sendfile, none through a write
    line = wait_until(lambda: access_line(caplog, "1.0.0"), 5, "the access log line")
    assert f"bytes={rel.size} " in line and "via=sendfile" in line

    before = spy.sent
    resp, body = request(srv, "GET", "/fw/kitchen/1.0.0.bin", headers={"Range": "bytes=1000000-1999999"})
    assert resp.status == 206 and body == stored(srv, "kitchen", "1.0.0")[1_000_000:2_000_000]
    assert spy.sent - before == 1_000_000

    before = spy.count()
    resp, body = request(srv, "HEAD", "/fw/kitchen/1.0.0.bin")
    assert resp.status == 200 and body == b"" and resp.getheader("Content-Length") == str(rel.size)
    assert spy.count() == before  # HEAD sends no body, by any path


def test_the_connection_is_kept_alive_after_a_sendfile_response(tmp_path: Path, servers: Any,
                                                                spy: SendfileSpy) -> None:
    srv = servers(write_config(tmp_path), HTTP_ONLY)
    rel = release(srv.config, "kitchen", "1.0.0", 2 * MiB)
    conn = http.client.HTTPConnection("127.0.0.1", srv.server.port, timeout=10)
    auth = {"Authorization": basic_header("kitchen-1", "pw-kitchen-1")}
    conn.request("GET", "/fw/kitchen/1.0.0.bin", headers=auth)
    first = conn.getresponse()
    assert first.status == 200 and hashlib.md5(first.read()).hexdigest() == rel.md5
    sock = conn.sock
    conn.request("GET", "/fw/kitchen/1.0.0.bin", headers={**auth, "Range": "bytes=0-9"})
    second = conn.getresponse()
    assert second.status == 206 and second.read() == stored(srv, "kitchen", "1.0.0")[:10]
    conn.request("GET", "/healthz")
    assert conn.getresponse().status == 200
    assert conn.sock is sock  # one connection carried all three
    conn.close()
    assert spy.sent == rel.size + 10


def test_short_sends_and_eagain_add_up_to_the_whole_image(tmp_path: Path, servers: Any, spy: SendfileSpy) -> None:
    spy.cap, spy.eagain_every = 1000, 3  # every call short, every third one EAGAIN
    srv = servers(write_config(tmp_path), HTTP_ONLY)
    rel = release(srv.config, "kitchen", "1.0.0", 300_000)
    resp, body = request(srv, "GET", "/fw/kitchen/1.0.0.bin")
    assert resp.status == 200 and len(body) == rel.size and hashlib.md5(body).hexdigest() == rel.md5
    assert spy.count() >= rel.size // 1000 and spy.count(BlockingIOError) >= rel.size // 3000


def test_a_device_that_reads_nothing_costs_no_sends_and_resumes(tmp_path: Path, servers: Any,
                                                                spy: SendfileSpy) -> None:
    srv = servers(write_config(tmp_path), HTTP_ONLY)
    rel = release(srv.config, "kitchen", "1.0.0", 8 * MiB)  # more than the socket buffers hold
    sock = start_download(srv, "1.0.0")
    try:
        wait_until(spy.count, 10, "the body to be under way")
        # While the device reads nothing, the loop goes round (here: fifty other requests) and the
        # download's writer runs only when the kernel has room: every call moves bytes (the
        # socket buffer growing), none spins on EAGAIN, and the buffers hold less than the image.
        for _ in range(50):
            assert request(srv, "GET", "/healthz", user=None)[0].status == 200
        assert spy.count(BlockingIOError) == 0
        assert spy.count() <= rel.size // SENDFILE_BLOCK
        assert spy.sent < rel.size
        head_and_body = read_to_end(sock)  # the device reads again: the rest follows
    finally:
        sock.close()
    body = head_and_body.partition(b"\r\n\r\n")[2]
    assert len(body) == rel.size and hashlib.md5(body).hexdigest() == rel.md5


def test_a_reset_mid_body_is_logged_frees_everything_and_is_no_finished_download(
        tmp_path: Path, servers: Any, spy: SendfileSpy, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.INFO)
    srv = servers(write_config(tmp_path), HTTP_ONLY)
    release(srv.config, "kitchen", "1.0.0", 8 * MiB)
    finished: list[str] = []
    real_finished = srv.service.download_finished
    monkeypatch.setattr(srv.service, "download_finished",
                        lambda device, rel: (finished.append(device), real_finished(device, rel)))
    fds = open_fds()
    sock = start_download(srv, "1.0.0")
    wait_until(spy.count, 10, "the body to be under way")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()  # RST
    line = wait_until(lambda: access_line(caplog, "1.0.0"), 10, "the access log line")
    assert "client-disconnected" in line and "via=sendfile" in line
    assert not any(r.exc_info for r in caplog.records)
    assert not any(r.levelno >= logging.WARNING and r.name == "tinyota.http" for r in caplog.records)
    # The socket's duplicate and the image file are closed with it.
    wait_until(lambda: open_fds() == fds, 10, "the download's descriptors to close")
    assert finished == []
    request(srv, "GET", "/fw/kitchen/1.0.0.bin")  # a whole download does count
    assert finished == ["kitchen-1"]


def test_a_device_that_stops_reading_is_cut_after_the_idle_timeout(
        tmp_path: Path, servers: Any, spy: SendfileSpy, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    srv = limited(tmp_path, servers, "{idle_timeout: 1s}")
    rel = release(srv.config, "kitchen", "1.0.0", 8 * MiB)
    sock = start_download(srv, "1.0.0")
    try:
        line = wait_until(lambda: access_line(caplog, "1.0.0"), 15, "the stalled download to be cut")
        assert line.endswith(" stalled") and "via=sendfile" in line
        assert any("took nothing for" in r.getMessage() for r in caplog.records)
        assert len(read_to_end(sock)) < rel.size  # what the buffers held, then the end
    finally:
        sock.close()


def test_a_file_shorter_than_promised_ends_the_connection(tmp_path: Path, servers: Any, spy: SendfileSpy,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    # The store never shrinks a file; a damaged disk or a hand in the store folder might. The
    # sender must end the response (the device sees it short) instead of calling sendfile forever.
    caplog.set_level(logging.INFO)
    srv = servers(write_config(tmp_path), HTTP_ONLY)
    rel = release(srv.config, "kitchen", "1.0.0", 8 * MiB)
    sock = start_download(srv, "1.0.0")
    try:
        wait_until(spy.count, 10, "the body to be under way")
        os.truncate(srv.service.store.path_of(rel), 6 * MiB)
        received = read_to_end(sock)
    finally:
        sock.close()
    assert len(received) < rel.size
    line = wait_until(lambda: access_line(caplog, "1.0.0"), 10, "the access log line")
    assert "client-disconnected" in line
    assert any("ended" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    assert request(srv, "GET", "/healthz", user=None)[0].status == 200
