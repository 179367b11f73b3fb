"""Connections are bounded: idle and slow-loris clients are cut off, and past the cap refused."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

from tests.conftest import release, wait_until, write_config
from tests.test_http import HTTP_ONLY, request


def limited(tmp_path: Path, servers: Any, limits: str) -> Any:
    text = write_config(tmp_path).read_text().replace("  admin:", f"  limits: {limits}\n  admin:")
    (tmp_path / "config.yaml").write_text(text)
    return servers(tmp_path / "config.yaml", HTTP_ONLY)


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """True when the server closes the socket (EOF or reset) before ``within`` seconds pass."""
    sock.settimeout(within)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


def test_idle_and_slow_loris_connections_are_closed(tmp_path: Path, servers: Any) -> None:
    srv = limited(tmp_path, servers, "{idle_timeout: 1s}")
    idle = socket.create_connection(("127.0.0.1", srv.server.port))
    loris = socket.create_connection(("127.0.0.1", srv.server.port))
    loris.sendall(b"GET /firmware.bin HTTP/1.1\r\nHost: x\r\n")  # headers never finish
    started = time.monotonic()
    assert closed_by_server(idle, 10)
    assert closed_by_server(loris, 10)
    assert time.monotonic() - started < 10
    resp, _ = request(srv, "GET", "/healthz", user=None)  # and the server still serves
    assert resp.status == 200


def test_connections_past_the_cap_get_503_while_others_continue(tmp_path: Path, servers: Any) -> None:
    srv = limited(tmp_path, servers, "{max_connections: 3}")
    release(srv.config, "kitchen", "1.0.0")
    held = [socket.create_connection(("127.0.0.1", srv.server.port)) for _ in range(3)]
    try:
        extra = socket.create_connection(("127.0.0.1", srv.server.port))
        extra.settimeout(10)
        assert extra.recv(100).startswith(b"HTTP/1.0 503")
        extra.close()
    finally:
        for sock in held:
            sock.close()
    # Once they are gone, devices get through again.
    wait_until(lambda: request(srv, "GET", "/fw/kitchen/1.0.0.bin")[0].status == 200, 10, "a free slot")


def test_oversized_headers_are_refused_without_a_crash(tmp_path: Path, servers: Any) -> None:
    srv = limited(tmp_path, servers, "{max_header_bytes: 4096}")
    sock = socket.create_connection(("127.0.0.1", srv.server.port), 10)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Junk: " + b"a" * 20000 + b"\r\n\r\n")
    assert closed_by_server(sock, 10)
    resp, _ = request(srv, "GET", "/healthz", user=None)
    assert resp.status == 200
