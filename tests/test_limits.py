"""Connections are bounded: idle and slow-loris clients are cut off, and past the cap refused."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

from tests.conftest import release, wait_until, write_config
from tests.test_http import HTTP_ONLY, request
from tinyota_mqtt.core.httpauth import basic_header
from tinyota_mqtt.core.image import make_test_image


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


def connect(srv: Any, source: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection(("127.0.0.1", srv.server.port), 10, source_address=(source, 0))


def still_served(sock: socket.socket) -> bool:
    """A held connection is really held: it still gets an answer to a request sent now."""
    sock.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
    sock.settimeout(10)
    return sock.recv(100).startswith(b"HTTP/1.1 200")


def turned_away(sock: socket.socket) -> bool:
    sock.settimeout(10)
    return sock.recv(100).startswith(b"HTTP/1.0 503")


def test_connections_past_the_cap_get_503_while_others_continue(tmp_path: Path, servers: Any) -> None:
    srv = limited(tmp_path, servers, "{max_connections: 3}")
    release(srv.config, "kitchen", "1.0.0")
    held = [connect(srv) for _ in range(3)]
    try:
        extra = connect(srv, "127.0.0.2")
        assert turned_away(extra)
        extra.close()
        assert all(still_served(sock) for sock in held)  # the cap was full of live connections
    finally:
        for sock in held:
            sock.close()
    # Once they are gone, devices get through again.
    wait_until(lambda: request(srv, "GET", "/fw/kitchen/1.0.0.bin")[0].status == 200, 10, "a free slot")


def test_one_address_cannot_take_every_connection(tmp_path: Path, servers: Any) -> None:
    srv = limited(tmp_path, servers, "{max_connections: 100, max_connections_per_address: 3}")
    release(srv.config, "kitchen", "1.0.0")
    flood = [connect(srv, "127.0.0.2") for _ in range(3)]
    try:
        extra = connect(srv, "127.0.0.2")
        assert turned_away(extra)  # the flooding address is capped...
        extra.close()
        resp, _ = request(srv, "GET", "/fw/kitchen/1.0.0.bin")  # ...while a device elsewhere downloads
        assert resp.status == 200
        assert all(still_served(sock) for sock in flood)  # and the flood's sockets were live all along
    finally:
        for sock in flood:
            sock.close()
    # A closed connection gives its slot back to its address.
    wait_until(lambda: still_served(connect(srv, "127.0.0.2")), 10, "the address's slot back")


def test_trusted_proxies_are_not_capped_per_address(tmp_path: Path, servers: Any) -> None:
    # All of a proxy's clients share its address; their limits belong in the proxy.
    srv = limited(tmp_path, servers, "{max_connections_per_address: 2}\n  trusted_proxies: [127.0.0.2]")
    held = [connect(srv, "127.0.0.2") for _ in range(5)]
    try:
        assert all(still_served(sock) for sock in held)
    finally:
        for sock in held:
            sock.close()


def upload_request(srv: Any, size: int) -> bytes:
    auth = basic_header("admin", "admin-secret")
    return (f"POST /api/releases?image=kitchen&version=4.0.0 HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: {auth}\r\nContent-Length: {size}\r\n\r\n").encode()


def test_an_upload_that_keeps_sending_is_never_cut(tmp_path: Path, servers: Any) -> None:
    srv = limited(tmp_path, servers, "{idle_timeout: 2s}")
    image = make_test_image("4.0.0", 64 * 1024)
    sock = connect(srv)
    sock.sendall(upload_request(srv, len(image)))
    # Never silent for long, but taking well over idle_timeout in all: Tornado's body_timeout
    # (what idle_timeout used to set) cut such uploads at 2 s here, 60 s by default.
    pieces = [image[i:i + 1024] for i in range(0, len(image), 1024)]
    for piece in pieces:
        sock.sendall(piece)
        time.sleep(6 / len(pieces))
    sock.settimeout(30)
    assert sock.recv(100).startswith(b"HTTP/1.1 201")
    sock.close()
    assert srv.service.store.get("kitchen", "4.0.0").size == len(image)


def test_an_upload_that_stalls_is_cut_and_leaves_nothing(tmp_path: Path, servers: Any) -> None:
    srv = limited(tmp_path, servers, "{idle_timeout: 1s}")
    image = make_test_image("4.0.0", 64 * 1024)
    sock = connect(srv)
    sock.sendall(upload_request(srv, len(image)) + image[:10_000])
    incoming = srv.config.server.store / ".incoming"
    wait_until(lambda: list(incoming.glob("*.part")), 10, "the upload to begin")
    assert closed_by_server(sock, 30)  # stalled: cut after the idle timeout
    wait_until(lambda: not list(incoming.glob("*.part")), 10, "the .part to go")
    assert srv.service.store.releases("kitchen") == []


def test_oversized_headers_are_refused_without_a_crash(tmp_path: Path, servers: Any) -> None:
    srv = limited(tmp_path, servers, "{max_header_bytes: 4096}")
    sock = socket.create_connection(("127.0.0.1", srv.server.port), 10)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Junk: " + b"a" * 20000 + b"\r\n\r\n")
    assert closed_by_server(sock, 10)
    resp, _ = request(srv, "GET", "/healthz", user=None)
    assert resp.status == 200
