"""The admin API: streamed uploads that either land whole or not at all, listing, CSRF guard."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ServerThread, wait_until, write_config
from tests.test_http import HTTP_ONLY, request
from tinyota_mqtt.core.httpauth import basic_header
from tinyota_mqtt.core.image import make_test_image

ADMIN = {"user": "admin", "password": "admin-secret"}


@pytest.fixture
def server(tmp_path: Path, servers: Any) -> ServerThread:
    return servers(write_config(tmp_path), HTTP_ONLY)  # type: ignore[no-any-return]


def upload(server: ServerThread, query: str, data: bytes, **headers: str) -> tuple[int, Any]:
    resp, body = request(server, "POST", f"/api/releases?{query}", body=data,
                         headers={"Content-Type": "application/octet-stream", **headers}, **ADMIN)
    return resp.status, json.loads(body) if body else None


def test_upload_then_list_then_download(server: ServerThread) -> None:
    data = make_test_image("1.4.0", 123_456)
    status, body = upload(server, f"image=kitchen&version=1.4.0&notes=hello&md5={hashlib.md5(data).hexdigest()}", data)
    assert status == 201, body
    assert body["md5"] == hashlib.md5(data).hexdigest() and body["notes"] == "hello"
    resp, listing = request(server, "GET", "/api/releases?image=kitchen", **ADMIN)
    assert [r["version"] for r in json.loads(listing)] == ["1.4.0"]
    _resp, got = request(server, "GET", "/fw/kitchen/1.4.0.bin")
    assert got == data


@pytest.mark.parametrize(("query", "data", "status", "message"), [
    ("image=kitchen&version=1.0.0", b"", 400, "empty"),
    ("image=kitchen&version=1.0.0", b"MZ not an esp image", 400, "not an ESP firmware image"),
    ("image=kitchen&version=one", make_test_image("1.0.0"), 400, "not a semantic version"),
    ("image=kichen&version=1.0.0", make_test_image("1.0.0"), 400, "not in the config"),
    ("image=kitchen&version=1.0.0&md5=" + "0" * 32, make_test_image("1.0.0"), 400, "md5 does not match"),
    ("image=kitchen&version=1.0.0&md5=xyz", make_test_image("1.0.0"), 400, "hex digits"),
])
def test_bad_uploads_are_refused_clearly(server: ServerThread, query: str, data: bytes, status: int,
                                         message: str) -> None:
    got, body = upload(server, query, data)
    assert got == status
    assert message in body["error"]
    assert server.service.store.releases() == []


def test_duplicate_upload_is_409_and_replace_works(server: ServerThread) -> None:
    data = make_test_image("1.0.0")
    assert upload(server, "image=kitchen&version=1.0.0", data)[0] == 201
    status, body = upload(server, "image=kitchen&version=1.0.0", data)
    assert status == 409 and "--replace" in body["hint"]
    assert upload(server, "image=kitchen&version=1.0.0&replace=1", data)[0] == 201


def test_oversized_upload_is_refused_before_reading(tmp_path: Path, servers: Any) -> None:
    text = (write_config(tmp_path).read_text()
            .replace("  admin:", "  limits: {max_upload_bytes: 1KiB}\n  admin:"))
    srv = servers(write_config(tmp_path, text=text.replace("{", "{{").replace("}", "}}")), HTTP_ONLY)
    status, body = upload(srv, "image=kitchen&version=1.0.0", make_test_image("1.0.0", 5000))
    assert status == 400 and "limit" in body["error"]


def test_interrupted_upload_leaves_no_release(server: ServerThread) -> None:
    data = make_test_image("2.0.0", 500_000)
    auth = basic_header("admin", "admin-secret")
    sock = socket.create_connection(("127.0.0.1", server.server.port), 10)
    sock.sendall((f"POST /api/releases?image=kitchen&version=2.0.0 HTTP/1.1\r\nHost: x\r\n"
                  f"Authorization: {auth}\r\nContent-Length: {len(data)}\r\n\r\n").encode() + data[:200_000])
    incoming = server.config.server.store / ".incoming"
    wait_until(lambda: incoming.exists() and any(p.stat().st_size > 100_000 for p in incoming.iterdir()), 10,
               "the upload to be under way")
    sock.close()
    wait_until(lambda: not any(incoming.iterdir()), 10, "the partial upload to be discarded")
    assert server.service.store.releases() == []


def test_cross_site_posts_are_refused(server: ServerThread) -> None:
    data = make_test_image("1.0.0")
    status, _body = upload(server, "image=kitchen&version=1.0.0", data, Origin="http://evil.example")
    assert status == 403
    status, _ = upload(server, "image=kitchen&version=1.0.0", data, **{"Sec-Fetch-Site": "cross-site"})
    assert status == 403
    assert server.service.store.releases() == []
    same = f"http://127.0.0.1:{server.server.port}"
    assert upload(server, "image=kitchen&version=1.0.0", data, Origin=same)[0] == 201


def test_device_detail_and_unknown_device(server: ServerThread) -> None:
    resp, body = request(server, "GET", "/api/devices/kitchen-1", **ADMIN)
    detail = json.loads(body)
    assert detail["group"] == "kitchen-lights" and detail["topics"]["update"].endswith("/kitchen-1/update")
    resp, _ = request(server, "GET", "/api/devices/ghost", **ADMIN)
    assert resp.status == 404



def test_deleting_a_release_withdraws_its_announcement(tmp_path: Path, broker: Any, prefix: str, servers: Any,
                                                       probes: Any) -> None:
    server = servers(write_config(tmp_path, mqtt=broker.url, prefix=prefix))
    wait_until(lambda: server.service.ready, 15, "the server's MQTT session")
    watch = probes(broker.url).subscribe(f"{prefix}/kitchen-1/update")
    assert upload(server, "image=kitchen&version=1.0.0", make_test_image("1.0.0"))[0] == 201
    announced = json.loads(watch.wait_for(f"{prefix}/kitchen-1/update", lambda m: m.payload != b"").payload)
    assert announced["version"] == "1.0.0"

    resp, body = request(server, "DELETE", "/api/releases/kitchen/1.0.0", **ADMIN)
    assert resp.status == 200 and json.loads(body)["version"] == "1.0.0"
    # Withdrawn by the time the answer comes, not at some later tick.
    history = json.loads(request(server, "GET", "/api/devices/kitchen-1/history", **ADMIN)[1])
    assert (history[0]["id"], history[0]["state"]) == (announced["id"], "cancelled")
    # The retained announcement is cleared on the broker: no device is sent to a missing file.
    watch.wait_for(f"{prefix}/kitchen-1/update", lambda m: m.payload == b"")
    late = probes(broker.url).subscribe(f"{prefix}/kitchen-1/update").subscribe(f"{prefix}/marker")
    late.publish(f"{prefix}/marker", b"after")  # the broker delivers in order: retained ones first
    late.wait_for(f"{prefix}/marker")
    assert late.received(f"{prefix}/kitchen-1/update") == []  # a device subscribing now gets nothing
    assert request(server, "GET", "/api/releases/kitchen/1.0.0", **ADMIN)[0].status == 404
    assert json.loads(request(server, "GET", "/api/releases?image=kitchen", **ADMIN)[1]) == []
    assert request(server, "DELETE", "/api/releases/kitchen/1.0.0", **ADMIN)[0].status == 404
    assert request(server, "DELETE", "/api/releases/kitchen/1.0.0", user=None)[0].status == 401


def test_device_history_lists_attempts_newest_first(tmp_path: Path, broker: Any, prefix: str, servers: Any,
                                                    probes: Any) -> None:
    server = servers(write_config(tmp_path, mqtt=broker.url, prefix=prefix))
    wait_until(lambda: server.service.ready, 15, "the server's MQTT session")
    device = probes(broker.url)
    assert json.loads(request(server, "GET", "/api/devices/sensor-1/history", **ADMIN)[1]) == []
    for version in ("1.0.0", "1.1.0"):
        assert upload(server, f"image=sensor&version={version}", make_test_image(version, platform="esp32"))[0] == 201
    first = json.loads(request(server, "POST", "/api/devices/sensor-1/install", body=b'{"version": "1.0.0"}',
                               headers={"Content-Type": "application/json"}, **ADMIN)[1])["attempts"][0]
    device.publish(f"{prefix}/sensor-1/status", json.dumps({"state": "idle", "version": "1.0.0"}))
    wait_until(lambda: server.service.registry.attempt(first["id"]).state == "succeeded", 10,
               "the device's report to confirm 1.0.0")
    second = json.loads(request(server, "POST", "/api/devices/sensor-1/install", body=b'{"version": "1.1.0"}',
                                headers={"Content-Type": "application/json"}, **ADMIN)[1])["attempts"][0]
    resp, body = request(server, "GET", "/api/devices/sensor-1/history", **ADMIN)
    history = json.loads(body)
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("application/json")
    assert [(a["id"], a["version"], a["from_version"], a["state"]) for a in history] == [
        (second["id"], "1.1.0", "1.0.0", "pending"), (first["id"], "1.0.0", None, "succeeded")]
    assert history[1]["progress"] == 100 and history[1]["error"] is None
    # Another device's history is its own.
    assert json.loads(request(server, "GET", "/api/devices/kitchen-2/history", **ADMIN)[1]) == []
    assert request(server, "GET", "/api/devices/sensor-1/history", user=None)[0].status == 401


def test_the_kdf_runs_off_the_event_loop(tmp_path: Path, servers: Any) -> None:
    """A first login with a hashed password costs a PBKDF2 run; while it runs in a worker thread
    the server keeps answering others. Shown by events, not timing: the real check is held at its
    start until a /healthz has been answered; if the check ran on the event loop, nothing could
    answer and the /healthz would time out."""
    from tinyota_mqtt.core.passwords import hash_password

    config = write_config(tmp_path)
    hashed = hash_password("pw-kitchen-1", iterations=1000)
    config.write_text(config.read_text().replace("password: pw-kitchen-1", f"password: '{hashed}'"))
    server = servers(config, HTTP_ONLY)
    service = server.service
    real_check = service.authenticate
    kdf_running, healthz_answered = threading.Event(), threading.Event()

    def held_check(header: str | None) -> Any:
        kdf_running.set()
        healthz_answered.wait(30)  # bounded: a blocked loop must not hang the suite
        return real_check(header)

    service.authenticate = held_check  # the same check, with a pause at its start
    answers: list[int] = []
    worker = threading.Thread(target=lambda: answers.append(request(server, "GET", "/fw/kitchen/9.9.9.bin")[0].status))
    worker.start()
    try:
        assert kdf_running.wait(15), "the hashed login never reached the password check"
        try:
            health = request(server, "GET", "/healthz", user=None)[0].status
        except TimeoutError:
            pytest.fail("/healthz went unanswered while the KDF ran: the check blocks the event loop")
        assert health == 200
    finally:
        healthz_answered.set()
        worker.join(30)
    assert answers == [403]  # authenticated (a wrong password is 401), then refused: never announced
    assert service.authentication_is_cheap(basic_header("kitchen-1", "pw-kitchen-1"))  # cached now
