"""The firmware server over real sockets: auth, streaming, ESP headers, Range, 304, traversal."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import logging
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ServerThread, release, tinyota, wait_until, write_config
from tinyota_mqtt.core import protocol
from tinyota_mqtt.core.httpauth import basic_header
from tinyota_mqtt.runner import Overrides

HTTP_ONLY = Overrides(mqtt_url="none")


@pytest.fixture
def server(tmp_path: Path, servers: Any) -> ServerThread:
    srv: ServerThread = servers(write_config(tmp_path), HTTP_ONLY)
    release(srv.config, "kitchen", "1.0.0", 200_000, notes="first")
    release(srv.config, "kitchen", "1.1.0", 300_000, notes="second")
    release(srv.config, "sensor", "2.0.0", 50_000)
    srv.call(srv.service.tick)
    return srv


def request(server: ServerThread, method: str, path: str, *, user: str | None = "kitchen-1",
            password: str | None = None, headers: dict[str, str] | None = None,
            body: bytes | None = None) -> tuple[http.client.HTTPResponse, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.server.port, timeout=10)
    hdrs = dict(headers or {})
    if user is not None:
        hdrs["Authorization"] = basic_header(user, password if password is not None else f"pw-{user}")
    conn.request(method, path, body=body, headers=hdrs)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp, data


def stored(server: ServerThread, image: str, version: str) -> bytes:
    store = server.service.store
    return store.path_of(store.get(image, version)).read_bytes()


def raw_http(port: int, text: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), 10) as sock:
        sock.sendall(text.encode("latin-1"))
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


# -- downloads --------------------------------------------------------------------------------------

def test_download_bytes_and_headers_match_the_store(server: ServerThread) -> None:
    resp, data = request(server, "GET", "/fw/kitchen/1.1.0.bin")
    expected = stored(server, "kitchen", "1.1.0")
    assert resp.status == 200
    assert data == expected
    assert resp.getheader("Content-Length") == str(len(expected))
    assert resp.getheader("x-MD5") == hashlib.md5(expected).hexdigest()
    assert resp.getheader("ETag") == f'"{hashlib.sha256(expected).hexdigest()}"'
    assert resp.getheader("Accept-Ranges") == "bytes"
    assert resp.getheader("Content-Type") == "application/octet-stream"
    assert resp.getheader("Transfer-Encoding") is None


def test_head_and_get_agree_header_for_header(server: ServerThread) -> None:
    get, _ = request(server, "GET", "/fw/kitchen/1.1.0.bin")
    head, body = request(server, "HEAD", "/fw/kitchen/1.1.0.bin")
    assert body == b""
    ignore = {"date"}
    assert {k.lower(): v for k, v in get.getheaders() if k.lower() not in ignore} == \
        {k.lower(): v for k, v in head.getheaders() if k.lower() not in ignore}


def test_http10_request_gets_content_length_never_chunks(server: ServerThread) -> None:
    # ESP8266httpUpdate and HTTPUpdate send HTTP/1.0 and give up without Content-Length.
    auth = basic_header("kitchen-1", "pw-kitchen-1")
    raw = raw_http(server.server.port, f"GET /fw/kitchen/1.1.0.bin HTTP/1.0\r\nAuthorization: {auth}\r\n"
                                       "User-Agent: ESP8266-http-Update\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().lower().split("\r\n")
    assert lines[0].endswith("200 ok")
    assert f"content-length: {len(body)}" in lines
    assert not any(line.startswith("transfer-encoding") for line in lines)
    assert body == stored(server, "kitchen", "1.1.0")


def test_range_requests(server: ServerThread) -> None:
    full = stored(server, "kitchen", "1.1.0")
    resp, data = request(server, "GET", "/fw/kitchen/1.1.0.bin", headers={"Range": "bytes=100-199"})
    assert resp.status == 206
    assert data == full[100:200]
    assert resp.getheader("Content-Range") == f"bytes 100-199/{len(full)}"
    assert resp.getheader("x-MD5") == hashlib.md5(full).hexdigest()  # of the whole image, as the cores expect
    resp, data = request(server, "GET", "/fw/kitchen/1.1.0.bin", headers={"Range": "bytes=-10"})
    assert resp.status == 206 and data == full[-10:]
    resp, _ = request(server, "GET", "/fw/kitchen/1.1.0.bin", headers={"Range": f"bytes={len(full)}-"})
    assert resp.status == 416
    assert resp.getheader("Content-Range") == f"bytes */{len(full)}"


def test_if_none_match_gives_304(server: ServerThread) -> None:
    resp, _ = request(server, "GET", "/fw/kitchen/1.1.0.bin")
    again, body = request(server, "GET", "/fw/kitchen/1.1.0.bin", headers={"If-None-Match": resp.getheader("ETag")})
    assert again.status == 304 and body == b""


# -- ESP headers ------------------------------------------------------------------------------------

ESP = {"User-Agent": "ESP8266-http-Update", "x-ESP8266-STA-MAC": "02:00:00:00:00:01",
       "x-ESP8266-free-space": "1044480", "x-ESP8266-sketch-size": "300000", "x-ESP8266-mode": "sketch"}


def test_same_version_as_requested_is_304(server: ServerThread) -> None:
    resp, body = request(server, "GET", "/fw/kitchen/1.1.0.bin", headers={**ESP, "x-ESP8266-version": "1.1.0"})
    assert resp.status == 304 and body == b""


def test_too_little_free_space_is_403_and_recorded(server: ServerThread) -> None:
    headers = {**ESP, "x-ESP8266-free-space": "1000", "x-ESP8266-version": "1.0.0"}
    resp, body = request(server, "GET", "/fw/kitchen/1.1.0.bin", headers=headers)
    assert resp.status == 403
    assert b"not enough free space" in body
    view = server.view("kitchen-1")
    assert "not enough free space" in view["last_error"]
    assert "1000" in view["last_error"]


def test_esp32_headers_are_read_too(server: ServerThread) -> None:
    server.call(server.service.install, ["sensor-1"], "2.0.0")
    headers = {"User-Agent": "ESP32-http-Update", "x-ESP32-free-space": "10", "x-ESP32-version": "0.1.0"}
    resp, body = request(server, "GET", "/fw/sensor/2.0.0.bin", user="sensor-1", headers=headers)
    assert resp.status == 403
    assert b"not enough free space" in body  # the ESP32 header was read, not some other refusal


@pytest.mark.parametrize("value", ["lots", "-5", "1e9", "9" * 40])
def test_malformed_free_space_is_400_not_500(server: ServerThread, value: str) -> None:
    resp, body = request(server, "GET", "/fw/kitchen/1.1.0.bin", headers={**ESP, "x-ESP8266-free-space": value})
    assert resp.status == 400
    assert b"free-space" in body


# -- the seed's URL ---------------------------------------------------------------------------------

def test_firmware_bin_serves_the_devices_target(server: ServerThread) -> None:
    resp, data = request(server, "GET", "/firmware.bin")
    assert resp.status == 200
    assert data == stored(server, "kitchen", "1.1.0")  # auto group: the latest
    head, _ = request(server, "HEAD", "/firmware.bin")
    assert head.status == 200 and head.getheader("Content-Length") == str(len(data))
    resp, _ = request(server, "GET", "/firmware.bin", headers={**ESP, "x-ESP8266-version": "1.1.0"})
    assert resp.status == 304


def test_firmware_bin_without_a_target(server: ServerThread) -> None:
    # sensors update on command only, so nothing is targeted at sensor-1 yet.
    resp, _ = request(server, "GET", "/firmware.bin", user="sensor-1")
    assert resp.status == 404
    esp32 = {"User-Agent": "ESP32-http-Update", "x-ESP32-version": "2.0.0"}
    resp, _ = request(server, "GET", "/firmware.bin", user="sensor-1", headers=esp32)
    assert resp.status == 304  # an ESP core polling hears "no update"


# -- authentication ---------------------------------------------------------------------------------

@pytest.mark.parametrize("header", [
    None, "", "Basic", "Basic ", "Basic !!!notbase64!!!", "Basic " + base64.b64encode(b"nocolon").decode(),
    "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(), "Bearer abc", "Basic " + "A" * 5000,
    "Basic " + base64.b64encode(b":pw-kitchen-1").decode(), "basic " + base64.b64encode(b"kitchen-1:wrong").decode(),
    "Basic " + base64.b64encode(b"nobody:pw-kitchen-1").decode(),
])
def test_bad_credentials_are_401_never_500(server: ServerThread, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    for path in ("/fw/kitchen/1.0.0.bin", "/firmware.bin", "/api/devices"):
        resp, _ = request(server, "GET", path, user=None, headers=headers)
        assert resp.status == 401, (path, header)
        assert resp.getheader("WWW-Authenticate", "").startswith('Basic realm="TinyOTA"')


def test_basic_scheme_is_case_insensitive(server: ServerThread) -> None:
    token = base64.b64encode(b"kitchen-1:pw-kitchen-1").decode()
    resp, _ = request(server, "GET", "/fw/kitchen/1.1.0.bin", user=None, headers={"Authorization": f"basic {token}"})
    assert resp.status == 200


def test_a_device_fetches_only_its_own_image(server: ServerThread) -> None:
    resp, _ = request(server, "GET", "/fw/sensor/2.0.0.bin", user="kitchen-1")
    assert resp.status == 403
    resp, _ = request(server, "GET", "/fw/kitchen/1.0.0.bin", user="loner")
    assert resp.status == 403
    resp, _ = request(server, "GET", "/fw/sensor/2.0.0.bin", user="admin", password="admin-secret")
    assert resp.status == 200


def test_a_device_is_served_only_its_target_or_the_version_it_runs(server: ServerThread) -> None:
    # kitchen-lights updates automatically, so kitchen-1's target is the latest release, 1.1.0.
    assert request(server, "GET", "/fw/kitchen/1.1.0.bin")[0].status == 200
    # A forged announcement pointing at the real server cannot downgrade it to 1.0.0.
    resp, body = request(server, "GET", "/fw/kitchen/1.0.0.bin")
    assert resp.status == 403 and b"not announced to this device" in body
    assert "1.0.0 was not announced" in server.view("kitchen-1")["last_error"]  # recorded with the reason
    assert request(server, "HEAD", "/fw/kitchen/1.0.0.bin")[0].status == 403
    assert request(server, "GET", "/fw/kitchen/1.0.0.bin", headers={"Range": "bytes=0-9"})[0].status == 403
    # The version a device runs stays downloadable (a re-flash of what it has is no downgrade).
    idle = protocol.Status("idle", version="1.0.0")
    server.call(lambda: server.service.reports.on_status("kitchen-1", idle, live=True))
    assert request(server, "GET", "/fw/kitchen/1.0.0.bin")[0].status == 200
    # Cancel holds the device: no target any more, so 1.1.0 is refused too; an install opens it again.
    server.call(server.service.cancel, ["kitchen-1"])
    assert request(server, "GET", "/fw/kitchen/1.1.0.bin")[0].status == 403
    server.call(server.service.install, ["kitchen-1"], "1.1.0")
    assert request(server, "GET", "/fw/kitchen/1.1.0.bin")[0].status == 200
    # An on-command group with nothing installed has no target: nothing to download.
    assert request(server, "GET", "/fw/sensor/2.0.0.bin", user="sensor-1")[0].status == 403
    # The admin is no device and may fetch any release.
    resp, _ = request(server, "GET", "/fw/kitchen/1.0.0.bin", user="admin", password="admin-secret")
    assert resp.status == 200


def test_a_refusal_does_not_tell_a_device_which_releases_exist(server: ServerThread) -> None:
    answers = set()
    for path in ("/fw/sensor/2.0.0.bin", "/fw/sensor/9.9.9.bin", "/fw/nope/1.0.0.bin",
                 "/fw/kitchen/1.0.0.bin", "/fw/kitchen/9.9.9.bin"):
        resp, body = request(server, "GET", path)
        answers.add((resp.status, resp.reason, body))
    assert answers == {(403, "Forbidden: not announced to this device",
                        b"403 Forbidden: not announced to this device\n")}


def test_admin_api_refuses_device_credentials(server: ServerThread) -> None:
    resp, _ = request(server, "GET", "/api/devices", user="kitchen-1")
    assert resp.status == 403
    resp, body = request(server, "GET", "/api/devices", user="admin", password="admin-secret")
    assert resp.status == 200
    assert {d["id"] for d in json.loads(body)} >= {"kitchen-1", "kitchen-2", "sensor-1", "loner"}


# -- paths ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [
    "/fw/kitchen/9.9.9.bin", "/fw/nope/1.0.0.bin", "/fw/kitchen/...bin", "/fw/../config.yaml",
    "/fw/kitchen/..%2F..%2Fconfig.yaml.bin", "/fw/kitchen/%2e%2e%2fstate.sqlite.bin",
    "/fw/kitchen/1.0.0.bin%00", "/fw/kitchen/1.0.0.json", "/fw/kitchen/" + "1" * 5000 + ".bin",
    "/firmware.bin/../config.yaml", "/config.yaml", "/fw/kitchen/1.0.0.6c35.bin",
])
def test_unknown_and_hostile_paths_are_404(server: ServerThread, path: str) -> None:
    resp, body = request(server, "GET", path, user="admin", password="admin-secret")
    assert resp.status in (404, 400), (path, resp.status)
    assert b"admin-secret" not in body and b"sqlite" not in body.lower()


def test_healthz(server: ServerThread) -> None:
    resp, body = request(server, "GET", "/healthz", user=None)
    assert resp.status == 200
    assert json.loads(body)["status"] == "ok"


# -- streaming --------------------------------------------------------------------------------------

def test_a_stalled_reader_does_not_delay_another_download(tmp_path: Path, servers: Any) -> None:
    srv = servers(write_config(tmp_path), HTTP_ONLY)
    release(srv.config, "kitchen", "3.0.0", 4 * 1024 * 1024)
    auth = basic_header("kitchen-1", "pw-kitchen-1")
    stalled = socket.create_connection(("127.0.0.1", srv.server.port), 10)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(f"GET /fw/kitchen/3.0.0.bin HTTP/1.0\r\nAuthorization: {auth}\r\n\r\n".encode())
    assert stalled.recv(100).startswith(b"HTTP/1.1 200")  # started, then never read again
    try:
        resp, data = request(srv, "GET", "/fw/kitchen/3.0.0.bin", user="kitchen-2")
        assert resp.status == 200 and len(data) == 4 * 1024 * 1024
        # The stalled download is still open: the second finished while the first was blocked.
        assert stalled.fileno() != -1
    finally:
        stalled.close()


def test_a_client_that_disconnects_is_logged_not_a_traceback(server: ServerThread,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    release(server.config, "kitchen", "1.2.0", 8 * 1024 * 1024)  # more than socket buffers hold
    auth = basic_header("kitchen-1", "pw-kitchen-1")
    sock = socket.create_connection(("127.0.0.1", server.server.port), 10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(f"GET /fw/kitchen/1.2.0.bin HTTP/1.0\r\nAuthorization: {auth}\r\n\r\n".encode())
    sock.recv(1000)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()  # RST mid-download
    line = wait_until(lambda: next((r.getMessage() for r in caplog.records
                                    if "download device=kitchen-1" in r.getMessage()), None), 10,
                      "the access log line")
    assert "client-disconnected" in line
    assert "version=1.2.0" in line
    assert not any(r.exc_info for r in caplog.records)


def test_access_log_line_per_download(server: ServerThread, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tinyota.access")
    request(server, "GET", "/fw/kitchen/1.1.0.bin")
    line = wait_until(lambda: next((r.getMessage() for r in caplog.records
                                    if r.getMessage().startswith("download ")), None), 5, "access log")
    for part in ("device=kitchen-1", "image=kitchen", "version=1.1.0", "status=200", "bytes=300000", "seconds="):
        assert part in line
    assert "pw-kitchen-1" not in caplog.text


def test_parallel_downloads_all_get_the_right_bytes(server: ServerThread) -> None:
    expected = hashlib.md5(stored(server, "kitchen", "1.1.0")).hexdigest()
    results: list[str] = []

    def fetch(user: str) -> None:
        resp, data = request(server, "GET", "/fw/kitchen/1.1.0.bin", user=user)
        results.append(hashlib.md5(data).hexdigest() if resp.status == 200 else str(resp.status))

    threads = [threading.Thread(target=fetch, args=(u,)) for u in ["kitchen-1", "kitchen-2"] * 10]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [expected] * 20


def test_repeated_failed_logins_are_throttled_per_address(server: ServerThread) -> None:
    for _ in range(10):
        resp, _ = request(server, "GET", "/fw/kitchen/1.1.0.bin", password="guess")
        assert resp.status == 401
    resp, _ = request(server, "GET", "/fw/kitchen/1.1.0.bin", password="guess")
    assert resp.status == 429
    assert int(resp.getheader("Retry-After")) > 0
    # Only failures are throttled: the right password still gets in (tests/test_throttle.py).
    resp, _ = request(server, "GET", "/fw/kitchen/1.1.0.bin")
    assert resp.status == 200
    resp, _ = request(server, "GET", "/healthz", user=None)  # no login needed: still answered
    assert resp.status == 200




# -- the default admin account (issue 16) -----------------------------------------------------------

def without_admin(tmp_path: Path, host: str = "127.0.0.1") -> Path:
    path = write_config(tmp_path)
    lines = [line for line in path.read_text().splitlines() if not line.startswith("  admin:")]
    path.write_text("\n".join(lines).replace("  host: 127.0.0.1", f"  host: {host}") + "\n")
    return path


@pytest.mark.parametrize("how", ["config", "--host"])
def test_the_default_admin_password_is_refused_beyond_loopback(tmp_path: Path, how: str) -> None:
    if how == "config":
        result = tinyota("serve", "-c", str(without_admin(tmp_path, "0.0.0.0")), "--mqtt", "none")
    else:
        result = tinyota("serve", "-c", str(without_admin(tmp_path)), "--mqtt", "none", "--host", "0.0.0.0")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "refusing to listen on 0.0.0.0 with the default admin password" in result.stderr
    assert "server.admin.password" in result.stderr and "TINYOTA_ADMIN_PASSWORD" in result.stderr
    assert "serving on" not in result.stdout


def test_the_default_admin_password_still_serves_loopback(tmp_path: Path, servers: Any) -> None:
    srv = servers(without_admin(tmp_path), HTTP_ONLY)  # the demo and tests on 127.0.0.1 keep working
    resp, _ = request(srv, "GET", "/api/devices", user="admin", password="admin")
    assert resp.status == 200


def test_a_set_admin_password_may_listen_on_every_interface(tmp_path: Path, servers: Any) -> None:
    path = write_config(tmp_path)
    path.write_text(path.read_text().replace("  host: 127.0.0.1", "  host: 0.0.0.0"))
    srv = servers(path, HTTP_ONLY)
    resp, _ = request(srv, "GET", "/api/devices", user="admin", password="admin-secret")
    assert resp.status == 200
