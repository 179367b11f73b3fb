"""Hostile and random input against a live server: nothing crashes, nothing answers 500, nothing escapes."""

from __future__ import annotations

import hashlib
import json
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Mosquitto, ServerThread, release, wait_until, write_config
from tests.test_http import HTTP_ONLY, request
from tinyota_mqtt.core.httpauth import basic_header
from tinyota_mqtt.core.image import make_test_image

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Any:
    srv = ServerThread(write_config(tmp_path_factory.mktemp("hostile")), HTTP_ONLY).start()
    release(srv.config, "kitchen", "1.0.0", 10_000)
    yield srv
    srv.stop()


def no_secret(body: bytes) -> None:
    for secret in (b"pw-kitchen-1", b"admin-secret", b"Traceback"):
        assert secret not in body


@FAST
@given(st.text(min_size=0, max_size=60))
def test_random_range_headers(live: ServerThread, value: str) -> None:
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return  # not sendable as a header at all
    if any(c in value for c in "\r\n\x00"):
        return
    resp, body = request(live, "GET", "/fw/kitchen/1.0.0.bin", headers={"Range": value})
    assert resp.status in (200, 206, 400, 416), (value, resp.status)  # 400: a control character
    if resp.status == 206:
        assert len(body) == int(resp.getheader("Content-Length"))


@FAST
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=80))
def test_random_paths(live: ServerThread, tail: str) -> None:
    path = "/fw/" + quote(tail, safe="/%.")
    resp, body = request(live, "GET", path, user="admin", password="admin-secret")
    assert resp.status in (200, 400, 403, 404), (path, resp.status)
    no_secret(body)


@FAST
@given(st.dictionaries(st.sampled_from(["image", "version", "notes", "md5", "sha256", "replace", "force"]),
                       st.text(max_size=40), max_size=7), st.binary(max_size=64))
def test_random_upload_metadata(live: ServerThread, query: dict[str, str], data: bytes) -> None:
    qs = "&".join(f"{quote(k)}={quote(v)}" for k, v in query.items())
    resp, body = request(live, "POST", f"/api/releases?{qs}", body=data, user="admin", password="admin-secret")
    assert resp.status in (201, 400, 404, 409, 413), (qs, resp.status, body)
    no_secret(body)


@FAST
@given(st.dictionaries(st.sampled_from(["x-ESP8266-free-space", "x-ESP8266-version", "x-ESP32-sketch-size",
                                        "User-Agent", "x-ESP8266-chip-size"]),
                       st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=150)))
def test_random_esp_headers(live: ServerThread, headers: dict[str, str]) -> None:
    resp, _ = request(live, "GET", "/fw/kitchen/1.0.0.bin", headers=headers)
    assert resp.status in (200, 304, 400, 403), (headers, resp.status)


def test_a_release_replaced_mid_download_delivers_one_consistent_image(tmp_path: Path, servers: Any) -> None:
    srv = servers(write_config(tmp_path), HTTP_ONLY)
    # Larger than loopback's socket buffers can hold, so the server is surely mid-stream.
    old = release(srv.config, "kitchen", "2.0.0", 24 * 1024 * 1024)
    auth = basic_header("kitchen-1", "pw-kitchen-1")
    sock = socket.create_connection(("127.0.0.1", srv.server.port), 10)
    sock.sendall(f"GET /fw/kitchen/2.0.0.bin HTTP/1.0\r\nAuthorization: {auth}\r\n\r\n".encode())
    received = sock.recv(65536)
    # Replace it, then delete it, while the download is under way.
    fresh = tmp_path / "new.bin"
    fresh.write_bytes(make_test_image("2.0.0", 3 * 1024 * 1024, fill=b"\x00"))
    srv.service.store.add_file(fresh, "kitchen", "2.0.0", replace=True)
    srv.service.store.delete("kitchen", "2.0.0")
    while chunk := sock.recv(65536):
        received += chunk
    sock.close()
    head, _, body = received.partition(b"\r\n\r\n")
    headers = dict(line.lower().split(": ", 1) for line in head.decode().split("\r\n")[1:])
    assert headers["x-md5"] == old.md5 == hashlib.md5(body).hexdigest()  # the old image, whole
    resp, _ = request(srv, "GET", "/fw/kitchen/2.0.0.bin", user="admin", password="admin-secret")
    assert resp.status == 404  # and it is gone for the next request
    resp, _ = request(srv, "GET", "/fw/kitchen/2.0.0.bin")
    assert resp.status == 403  # no device is targeted at it any more, so it is refused unlooked


def test_a_device_flooding_its_status_does_not_starve_others(tmp_path: Path, broker: Mosquitto, prefix: str,
                                                            servers: Any, probes: Any) -> None:
    server = servers(write_config(tmp_path, mqtt=broker.url, prefix=prefix))
    wait_until(lambda: server.service.ready, 10, "connected")
    flooder = probes(broker.url)
    topic = f"{prefix}/kitchen-2/status"
    junk = json.dumps({"state": "downloading", "version": "1.0.0", "progress": 1, "error": "x" * 200})
    started = time.monotonic()
    for i in range(5000):
        flooder.client.publish(topic, b"{" if i % 2 else junk.encode(), qos=0)
    probes(broker.url).publish(f"{prefix}/kitchen-1/status", json.dumps({"state": "idle", "version": "7.0.0"}))
    wait_until(lambda: server.view("kitchen-1")["installed"] == "7.0.0", 30, "the quiet device's report")
    assert time.monotonic() - started < 30
    assert server.view("kitchen-2")["state"] == "downloading"
