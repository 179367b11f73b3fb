"""Login throttling against a real server on real loopback sockets (127.0.0.2 is "another
address": Linux routes 127/8 to lo): the findings of the adversarial review, and the documented
nginx setup in front. The rules themselves, on a fake clock, and the reading of forwarding headers
are pure and live in test_core_rules.py, which the mutation run's ``core`` scope runs.

KDF runs are counted with a spy around the real ``hashlib.pbkdf2_hmac`` (the server runs in this
process), so the tests assert how much work a guesser caused, never how long anything took.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, ServerThread, free_port, release, wait_until, write_config
from tests.test_http import HTTP_ONLY
from tinyota_mqtt.core.httpauth import basic_header
from tinyota_mqtt.core.passwords import hash_password
from tinyota_mqtt.http.app import KDF_THREADS

# -- against a real server ---------------------------------------------------------------------------

class KdfSpy:
    """Wraps the real PBKDF2: counts runs and the most that ran at once."""

    def __init__(self, real: Callable[..., bytes]) -> None:
        self.real, self.runs, self.running, self.most = real, 0, 0, 0
        self.lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> bytes:
        with self.lock:
            self.runs += 1
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            return self.real(*args, **kwargs)
        finally:
            with self.lock:
                self.running -= 1

    def reset(self) -> None:
        with self.lock:
            self.runs = self.most = 0


@pytest.fixture
def kdf(monkeypatch: pytest.MonkeyPatch) -> Iterator[KdfSpy]:
    spy = KdfSpy(hashlib.pbkdf2_hmac)
    monkeypatch.setattr(hashlib, "pbkdf2_hmac", spy)
    yield spy


def login(srv: ServerThread, user: str, password: str, *, source: str = "127.0.0.1",
          path: str = "/fw/kitchen/1.0.0.bin") -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", srv.server.port, timeout=60, source_address=(source, 0))
    try:
        conn.request("HEAD", path, headers={"Authorization": basic_header(user, password)})
        resp = conn.getresponse()
        resp.read()
        return resp
    finally:
        conn.close()


def hashed_server(tmp_path: Path, servers: Any, *, rounds: int, hashed: tuple[str, ...],
                  limits: str = "{}") -> ServerThread:
    """The usual test config with the given accounts' passwords hashed (``rounds`` PBKDF2 rounds)."""
    text = write_config(tmp_path).read_text().replace("  admin:", f"  limits: {limits}\n  admin:")
    for user in hashed:
        plain = "admin-secret" if user == "admin" else f"pw-{user}"
        text = text.replace(f"password: {plain}}}", f"password: '{hash_password(plain, iterations=rounds)}'}}")
    (tmp_path / "config.yaml").write_text(text)
    srv: ServerThread = servers(tmp_path / "config.yaml", HTTP_ONLY)
    release(srv.config, "kitchen", "1.0.0")
    return srv


def test_guesses_from_the_fleets_address_lock_out_neither_the_fleet_nor_the_admin(
        tmp_path: Path, servers: Any, kdf: KdfSpy) -> None:
    # The admin's password is hashed: its first login needs a KDF run the guesser must not block.
    srv = hashed_server(tmp_path, servers, rounds=1000, hashed=("admin",))
    for _ in range(10):
        assert login(srv, "kitchen-1", "guess").status == 401
    assert login(srv, "kitchen-1", "guess").status == 429  # the guesser is throttled...
    assert login(srv, "kitchen-1", "guess").getheader("Retry-After") not in (None, "0")
    assert login(srv, "kitchen-1", "pw-kitchen-1").status == 200  # ...the device it guessed at is not,
    assert login(srv, "kitchen-2", "pw-kitchen-2").status == 200  # nor the rest of the fleet behind it,
    assert login(srv, "admin", "admin-secret").status == 200  # nor the admin
    assert login(srv, "kitchen-1", "guess").status == 429  # and a right password lifts nothing


def test_parallel_guesses_at_a_hashed_password_run_the_kdf_a_bounded_number_of_times(
        tmp_path: Path, servers: Any, kdf: KdfSpy) -> None:
    # Enough rounds that a guess takes a while, so the 200 really overlap on the server.
    # All 200 connect at once: let them past the per-address connection cap to reach the login.
    srv = hashed_server(tmp_path, servers, rounds=200_000, hashed=("kitchen-1", "kitchen-2"),
                        limits="{max_connections_per_address: 1000}")
    kdf.reset()
    statuses: list[int] = []
    lock = threading.Lock()

    def guess() -> None:
        status = login(srv, "kitchen-1", "guess").status
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=guess) for _ in range(200)]
    for t in threads:
        t.start()
    # Meanwhile a device with a hashed password logs in from another address for the first time.
    assert login(srv, "kitchen-2", "pw-kitchen-2", source="127.0.0.2").status == 200
    for t in threads:
        t.join(120)
    assert len(statuses) == 200 and set(statuses) <= {401, 429}
    assert statuses.count(401) <= 10  # the limit: each admitted guess was counted before it ran
    assert kdf.runs <= 10 + 1  # the guesses, plus kitchen-2's one login
    assert kdf.most <= KDF_THREADS  # never more KDF work at once than the pool allows


def test_a_device_that_logged_in_before_the_guessing_keeps_getting_in(tmp_path: Path, servers: Any,
                                                                     kdf: KdfSpy) -> None:
    srv = hashed_server(tmp_path, servers, rounds=1000, hashed=("kitchen-1",))
    assert login(srv, "kitchen-1", "pw-kitchen-1").status == 200
    for _ in range(12):
        login(srv, "kitchen-1", "guess")
    kdf.reset()
    assert login(srv, "kitchen-1", "guess").status == 429
    assert kdf.runs == 0  # past the limit a guess costs no KDF run
    # Its password was verified once since start, so it is checked without the KDF and passes.
    assert login(srv, "kitchen-1", "pw-kitchen-1").status == 200


def test_a_wrong_password_for_an_unknown_id_costs_a_kdf_run_like_a_hashed_one(
        tmp_path: Path, servers: Any, kdf: KdfSpy) -> None:
    srv = hashed_server(tmp_path, servers, rounds=1000, hashed=("kitchen-1",))
    kdf.reset()
    assert login(srv, "kitchen-1", "guess").status == 401
    assert kdf.runs == 1
    assert login(srv, "nobody", "guess").status == 401
    assert kdf.runs == 2  # equalized: an unknown id is checked against a dummy hash
    # Made-up names share one allowance, so spraying them does not buy unbounded KDF work.
    for i in range(30):
        login(srv, f"nobody-{i}", "guess", source="127.0.0.3")
    assert kdf.runs <= 2 + 10


def test_an_all_plain_config_runs_no_kdf_for_unknown_ids(tmp_path: Path, servers: Any, kdf: KdfSpy) -> None:
    srv = hashed_server(tmp_path, servers, rounds=1000, hashed=())
    kdf.reset()
    assert login(srv, "nobody", "guess").status == 401
    assert login(srv, "kitchen-1", "guess").status == 401
    assert kdf.runs == 0  # nothing costly to look like


# -- behind a reverse proxy --------------------------------------------------------------------------


def proxied(srv: ServerThread, client: str | None, password: str, *, source: str = "127.0.0.1") -> int:
    conn = http.client.HTTPConnection("127.0.0.1", srv.server.port, timeout=30, source_address=(source, 0))
    headers = {"Authorization": basic_header("kitchen-1", password)}
    if client is not None:
        headers["X-Forwarded-For"] = client
    try:
        conn.request("HEAD", "/fw/kitchen/1.0.0.bin", headers=headers)
        return conn.getresponse().status
    finally:
        conn.close()


def test_behind_a_trusted_proxy_each_client_is_throttled_on_its_own(
        tmp_path: Path, servers: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tinyota.access")
    text = write_config(tmp_path).read_text().replace("  admin:", "  trusted_proxies: [127.0.0.1]\n  admin:")
    (tmp_path / "config.yaml").write_text(text)
    srv = servers(tmp_path / "config.yaml", HTTP_ONLY)
    release(srv.config, "kitchen", "1.0.0")
    for _ in range(10):
        assert proxied(srv, "203.0.113.5", "guess") == 401
    assert proxied(srv, "203.0.113.5", "guess") == 429  # that client is throttled...
    assert proxied(srv, "198.51.100.7", "guess") == 401  # ...not everyone else behind the proxy
    assert proxied(srv, "6.6.6.6, 198.51.100.7", "guess") == 401  # nor by a forged left part
    assert "ip=203.0.113.5" in caplog.text  # and the access log names the real client
    # A peer that is no proxy cannot pick a fresh address per guess.
    for i in range(10):
        assert proxied(srv, f"192.0.2.{i}", "guess", source="127.0.0.2") == 401
    assert proxied(srv, "192.0.2.99", "guess", source="127.0.0.2") == 429


NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
NGINX_MAIN = """\
daemon off;
master_process on;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
{user}
events {{ worker_connections 256; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    limit_conn_zone $binary_remote_addr zone=per_client:1m;
{site}
}}
"""


def documented_nginx_site() -> str:
    """The nginx example of docs/config.md, exactly as a reader copies it."""
    text = (ROOT / "docs" / "config.md").read_text()
    section = text[text.index("### Behind a reverse proxy"):]
    return section.split("```nginx\n", 1)[1].split("```", 1)[0]


@pytest.fixture
def nginx_in_front(tmp_path: Path, servers: Any) -> Iterator[tuple[ServerThread, int]]:
    if not Path(NGINX).exists():
        pytest.fail("nginx is not installed: apt-get install nginx (./dev test installs it)")
    text = write_config(tmp_path / "server").read_text()
    (tmp_path / "server" / "config.yaml").write_text(
        text.replace("  admin:", "  trusted_proxies: [127.0.0.1]\n  admin:"))
    srv = servers(tmp_path / "server" / "config.yaml", HTTP_ONLY)
    release(srv.config, "kitchen", "1.0.0", 100_000)
    port = free_port()
    site = documented_nginx_site()
    assert "listen 80;" in site and "proxy_pass http://127.0.0.1:8000;" in site
    site = site.replace("listen 80;", f"listen 127.0.0.1:{port};").replace(
        "proxy_pass http://127.0.0.1:8000;", f"proxy_pass http://127.0.0.1:{srv.server.port};")
    work = tmp_path / "nginx"
    work.mkdir()
    # As root, nginx's workers would become 'nobody' and could not read the test's directory.
    user = "user root;" if os.geteuid() == 0 else ""
    (work / "nginx.conf").write_text(NGINX_MAIN.format(dir=work, user=user, site=site))
    proc = subprocess.Popen([NGINX, "-p", str(work), "-e", str(work / "error.log"), "-c", str(work / "nginx.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def accepting() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"nginx exited: {proc.stderr.read().decode()}")  # type: ignore[union-attr]
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            return False

    try:
        wait_until(accepting, 15, "nginx to accept connections")
        yield srv, port
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_documented_nginx_setup_throttles_each_client_on_its_own(nginx_in_front: tuple[ServerThread, int]) -> None:
    srv, port = nginx_in_front

    def via_nginx(source: str, password: str, spoof: str | None = None) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
        headers = {"Authorization": basic_header("kitchen-1", password)}
        if spoof is not None:
            headers["X-Forwarded-For"] = spoof  # what a client may send; nginx appends the real one
        try:
            conn.request("GET", "/fw/kitchen/1.0.0.bin", headers=headers)
            resp = conn.getresponse()
            resp.read()
            return resp.status
        finally:
            conn.close()

    for i in range(10):
        assert via_nginx("127.0.0.2", "guess", spoof=f"192.0.2.{i}") == 401
    assert via_nginx("127.0.0.2", "guess", spoof="192.0.2.99") == 429  # a forged header buys nothing
    assert via_nginx("127.0.0.3", "guess") == 401  # the proxy's other clients are not throttled with it
    assert via_nginx("127.0.0.2", "pw-kitchen-1") == 200
    # An ESP core's HTTP/1.0 download through the proxy still gets Content-Length and x-MD5.
    auth = basic_header("kitchen-1", "pw-kitchen-1")
    with socket.create_connection(("127.0.0.1", port), 10, source_address=("127.0.0.3", 0)) as sock:
        sock.sendall(f"GET /fw/kitchen/1.0.0.bin HTTP/1.0\r\nHost: ota\r\nAuthorization: {auth}\r\n"
                     "User-Agent: ESP8266-http-Update\r\n\r\n".encode())
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().lower().split("\r\n")
    store = srv.service.store
    expected = store.path_of(store.get("kitchen", "1.0.0")).read_bytes()
    assert lines[0].endswith("200 ok") and body == expected
    assert f"content-length: {len(expected)}" in lines
    assert f"x-md5: {hashlib.md5(expected).hexdigest()}" in lines
