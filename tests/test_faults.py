"""Faults injected for real: the server killed, the broker restarted, an ACL that bites."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import sqlite3
import threading
from pathlib import Path
from typing import Any

from tests.conftest import ROOT, Mosquitto, release, tinyota, wait_until, write_config
from tests.test_http import request
from tinyota_mqtt.core.httpauth import basic_header
from tinyota_mqtt.core.image import make_test_image


def test_server_last_will_after_kill_9(tmp_path: Path, broker: Mosquitto, prefix: str, processes: Any,
                                       probes: Any) -> None:
    watch = probes(broker.url).subscribe(f"{prefix}/server/availability")
    proc = processes(write_config(tmp_path, mqtt=broker.url, prefix=prefix))
    watch.wait_for(f"{prefix}/server/availability", lambda m: m.payload == b"online")
    proc.kill()
    msg = watch.wait_for(f"{prefix}/server/availability", lambda m: m.payload == b"offline")
    assert msg.payload == b"offline"


def test_clean_stop_on_sigterm_marks_the_server_offline(tmp_path: Path, broker: Mosquitto, prefix: str,
                                                        processes: Any, probes: Any) -> None:
    watch = probes(broker.url).subscribe(f"{prefix}/server/availability")
    proc = processes(write_config(tmp_path, mqtt=broker.url, prefix=prefix))
    assert any("serving on http://127.0.0.1:" in line for line in proc.output)
    watch.wait_for(f"{prefix}/server/availability", lambda m: m.payload == b"online")
    assert proc.terminate() == 0
    watch.wait_for(f"{prefix}/server/availability", lambda m: m.payload == b"offline")
    assert not any("Traceback" in line for line in proc.output)


def test_healthz_the_dashboard_and_ready_agree_across_a_broker_restart(tmp_path: Path, prefix: str,
                                                                        servers: Any) -> None:
    """One source for "connected": the MQTT link's. /healthz, the dashboard (its page and its
    event stream) and the sync barrier (service.ready) all derive from it, so after the broker
    goes and comes back they say the same thing at each step."""
    from tests.test_dashboard import EventReader

    def dashboard_says() -> str:
        resp, body = request(server, "GET", "/", user="admin", password="admin-secret")
        assert resp.status == 200
        found = re.search(r'<span id="mqtt"[^>]*>MQTT (\w+)</span>', body.decode())
        assert found, "the fleet page has no MQTT pill"
        return found.group(1)

    def healthz_says() -> str:
        return str(json.loads(request(server, "GET", "/healthz", user=None)[1])["mqtt"])

    mosq = Mosquitto(tmp_path / "mosq").start()
    try:
        server = servers(write_config(tmp_path, mqtt=mosq.url, prefix=prefix))
        wait_until(lambda: server.service.ready, 10, "connected")
        assert (healthz_says(), dashboard_says()) == ("connected", "connected")
        stream = EventReader(server)
        try:
            assert stream.event("snapshot")["health"]["mqtt"] == "connected"
            mosq.stop()
            assert stream.event("health", 15)["mqtt"] == "disconnected"  # told at once, not at a heartbeat
            assert not server.service.ready
            assert (healthz_says(), dashboard_says()) == ("disconnected", "disconnected")
            mosq.start()
            assert stream.event("health", 40)["mqtt"] == "connected"
        finally:
            stream.close()
        wait_until(lambda: server.service.ready, 40, "the retained state of the new session")
        assert (healthz_says(), dashboard_says()) == ("connected", "connected")
        fresh = EventReader(server)
        try:
            assert fresh.event("snapshot")["health"]["mqtt"] == "connected"
        finally:
            fresh.close()
    finally:
        mosq.stop()


def test_reconnects_and_republishes_after_the_broker_restarts(tmp_path: Path, prefix: str, servers: Any,
                                                               probes: Any) -> None:
    mosq = Mosquitto(tmp_path / "mosq").start()  # persistence off: a restart forgets every retained message
    try:
        server = servers(write_config(tmp_path, mqtt=mosq.url, prefix=prefix))
        wait_until(lambda: server.service.ready, 10, "connected")
        release(server.config, "kitchen", "1.0.0")
        server.call(server.service.tick)
        first = json.loads(probes(mosq.url).subscribe(f"{prefix}/kitchen-1/update")
                           .wait_for(f"{prefix}/kitchen-1/update").payload)
        mosq.stop()
        wait_until(lambda: server.service.mqtt_connected is False, 10, "the server to notice")
        resp, body = request(server, "GET", "/healthz", user=None)
        assert json.loads(body)["mqtt"] == "disconnected"
        mosq.start()
        wait_until(lambda: server.service.ready, 40, "the server to reconnect")
        probe = probes(mosq.url).subscribe(f"{prefix}/#").subscribe(f"{prefix}-ha/#")
        again = json.loads(probe.wait_for(f"{prefix}/kitchen-1/update").payload)
        discovery = json.loads(probe.wait_for(f"{prefix}-ha/update/tinyota_kitchen-1/config").payload)
        assert discovery["unique_id"] == "tinyota_kitchen-1"
        assert again == first  # same attempt id: the device does not see a new update
        assert probe.wait_for(f"{prefix}/server/availability").payload == b"online"
        # The entity's state is whole again after the restart.
        state = probe.wait_for(f"{prefix}/kitchen-1/state")
        assert json.loads(state.payload)["latest_version"] == "1.0.0"
        # ... and it is subscribed again: a device report still lands.
        probe.publish(f"{prefix}/kitchen-1/status", json.dumps({"state": "idle", "version": "1.0.0"}))
        wait_until(lambda: (server.view("kitchen-1")["attempt"] or {}).get("state") == "succeeded", 10,
                   "the report after the reconnect")
    finally:
        mosq.stop()


def documented_acl(prefix: str) -> str:
    """The ACL block from docs/mosquitto.md, moved to this test's topic prefix."""
    text = (ROOT / "docs" / "mosquitto.md").read_text()
    block = re.search(r"```\n(# TinyOTA ACL\n.*?)```", text, re.S)
    assert block, "docs/mosquitto.md lost its ACL block"
    return block.group(1).replace("tinyota/", f"{prefix}/").replace("homeassistant/", f"{prefix}-ha/")


def test_acl_from_the_docs_keeps_devices_in_their_lane(tmp_path: Path, prefix: str, servers: Any,
                                                       probes: Any) -> None:
    mosq = Mosquitto(tmp_path / "mosq", users={"tinyota": "srv-pw", "kitchen-1": "pw-kitchen-1",
                                               "kitchen-2": "pw-kitchen-2"},
                     acl=documented_acl(prefix)).start()
    try:
        text = write_config(tmp_path, mqtt=mosq.url, prefix=prefix).read_text().replace(
            f"  client_id: tinyota-{prefix}", f"  client_id: tinyota-{prefix}\n  username: tinyota\n  password: srv-pw")
        (tmp_path / "config.yaml").write_text(text)
        server = servers(tmp_path / "config.yaml")
        wait_until(lambda: server.service.ready, 10, "the server to log in")
        release(server.config, "kitchen", "1.0.0")
        server.call(server.service.tick)
        k1 = probes(mosq.url, client_id="kitchen-1", username="kitchen-1", password="pw-kitchen-1")
        k1.subscribe(f"{prefix}/+/update")
        k1.wait_for(f"{prefix}/kitchen-1/update")
        # kitchen-1 pretends to be kitchen-2: mosquitto drops it, so the registry never hears it.
        k1.publish(f"{prefix}/kitchen-2/status", json.dumps({"state": "idle", "version": "6.6.6"}))
        k1.publish(f"{prefix}/kitchen-2/update", b"{}", retain=True)
        k1.publish(f"{prefix}/kitchen-1/status", json.dumps({"state": "idle", "version": "1.0.0"}))
        wait_until(lambda: server.view("kitchen-1")["installed"] == "1.0.0", 10, "its own report")
        assert server.view("kitchen-2")["installed"] is None
        assert k1.received(f"{prefix}/kitchen-2/update") == []  # cannot read another device's either
        bad = probes(mosq.url, username="kitchen-1", password="wrong")
        assert bad.refused is not None and not bad.connected.is_set()
    finally:
        mosq.stop()


def test_wrong_broker_password_reads_as_a_sentence(tmp_path: Path, prefix: str, servers: Any,
                                                   caplog: Any) -> None:
    mosq = Mosquitto(tmp_path / "mosq", users={"tinyota": "right"}).start()
    try:
        text = write_config(tmp_path, mqtt=mosq.url, prefix=prefix).read_text().replace(
            f"  client_id: tinyota-{prefix}", f"  client_id: tinyota-{prefix}\n  username: tinyota\n  password: wrong")
        (tmp_path / "config.yaml").write_text(text)
        servers(tmp_path / "config.yaml")
        line = wait_until(lambda: next((r.getMessage() for r in caplog.records
                                        if "refused the connection" in r.getMessage()), None), 10, "the refusal")
        assert "Not authorized" in line or "Bad user name or password" in line
        assert "check mqtt.username / mqtt.password" in line
        assert "wrong" not in caplog.text  # the password itself is never logged
    finally:
        mosq.stop()


def test_kill_9_right_after_an_mqtt_install_is_announced_loses_nothing(tmp_path: Path, broker: Mosquitto,
                                                                       prefix: str, processes: Any,
                                                                       probes: Any) -> None:
    """The install comes as Home Assistant sends it (an MQTT command, no API request that flushes
    the registry), and the server dies the moment its announcement reaches the broker: the
    attempt then exists only because the outbox committed it before publishing."""
    config = write_config(tmp_path, mqtt=broker.url, prefix=prefix)
    proc = processes(config)
    admin = {"Authorization": basic_header("admin", "admin-secret")}
    conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=10)
    conn.request("POST", "/api/releases?image=sensor&version=1.0.0", body=make_test_image("1.0.0", platform="esp32"),
                 headers=admin)
    uploaded = conn.getresponse()
    uploaded.read()
    assert uploaded.status == 201

    def mqtt_state() -> str:
        conn.request("GET", "/healthz")
        return str(json.loads(conn.getresponse().read())["mqtt"])

    wait_until(lambda: mqtt_state() == "connected", 15, "the server's MQTT session (it must hear the command)")
    conn.close()

    killed = threading.Event()
    seen: list[bytes] = []

    def kill_on_announcement(_c: Any, _u: Any, msg: Any) -> None:
        if msg.topic == f"{prefix}/sensor-1/update" and msg.payload and not killed.is_set():
            os.kill(proc.proc.pid, signal.SIGKILL)  # from the MQTT thread: no later flush can sneak in
            seen.append(msg.payload)
            killed.set()

    watch = probes(broker.url).subscribe(f"{prefix}/sensor-1/update")
    watch.client.on_message = kill_on_announcement
    watch.publish(f"{prefix}/sensor-1/install", b"install")  # what HA's Install button sends: the latest
    assert killed.wait(20), "the install command was never announced"
    proc.kill()
    announced = json.loads(seen[0])

    again = processes(config)  # a new server reads the same state file
    conn = http.client.HTTPConnection("127.0.0.1", again.port, timeout=10)
    conn.request("GET", "/api/devices/sensor-1", headers=admin)
    view = json.loads(conn.getresponse().read())
    conn.close()
    assert view["attempt"] is not None, "the announced attempt was lost with the process"
    assert (view["attempt"]["id"], view["attempt"]["state"], view["target"]) == (announced["id"], "pending", "1.0.0")
    # The broker's retained announcement and the restarted server's attempt are the same one, so
    # the device's report of it is recognised and the outcome is recorded.
    fresh = probes(broker.url).subscribe(f"{prefix}/sensor-1/update")
    assert json.loads(fresh.wait_for(f"{prefix}/sensor-1/update").payload)["id"] == announced["id"]
    fresh.publish(f"{prefix}/sensor-1/status", json.dumps({"state": "idle", "version": "1.0.0", "id": announced["id"]}))

    def state() -> str:
        c = http.client.HTTPConnection("127.0.0.1", again.port, timeout=10)
        c.request("GET", "/api/devices/sensor-1/history", headers=admin)
        history = json.loads(c.getresponse().read())
        c.close()
        return str(history[0]["state"]) if history and history[0]["id"] == announced["id"] else ""

    wait_until(lambda: state() == "succeeded", 15, "the report of the announced attempt to confirm it")


def test_disk_full_during_an_http_upload(tmp_path: Path, processes: Any) -> None:
    """The server's disk fills up mid-upload (RLIMIT_FSIZE): 507, nothing kept, the server lives on."""
    import resource
    import signal

    def small_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    config = write_config(tmp_path)
    proc = processes(config, "--mqtt", "none", preexec=small_disk)
    admin = {"Authorization": basic_header("admin", "admin-secret")}
    conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=10)
    conn.request("POST", "/api/releases?image=kitchen&version=1.0.0", body=make_test_image("1.0.0", 600_000),
                 headers=admin)
    resp = conn.getresponse()
    body = json.loads(resp.read())
    assert resp.status == 507 and "is full" in body["error"] and "not kept" in body["error"]
    conn.request("GET", "/api/releases", headers=admin)
    listing = conn.getresponse()
    assert json.loads(listing.read()) == []
    conn.close()
    assert list((tmp_path / "firmware" / ".incoming").iterdir()) == []
    assert proc.proc.poll() is None and not any("Traceback" in line for line in proc.output)


def test_corrupt_state_file_stops_the_server_with_advice(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    (tmp_path / "state.sqlite").write_bytes(b"this is not a database, it was a disk error" * 100)
    out = tinyota("serve", "-c", str(config), "--mqtt", "none", timeout=60)
    assert out.returncode == 2
    assert "state.sqlite is unusable" in out.stderr and ".broken" in out.stderr
    assert "Traceback" not in out.stderr
    assert (tmp_path / "state.sqlite").read_bytes().startswith(b"this is not")  # never silently reset


def test_mqtt_works_on_descriptors_above_1024(tmp_path: Path, broker: Mosquitto, prefix: str,
                                              servers: Any) -> None:
    """A thousand open downloads push new sockets past select()'s limit: the link must not care."""
    import os
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 4096), hard), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        assert held[-1] >= 1024
        server = servers(write_config(tmp_path, mqtt=broker.url, prefix=prefix))
        wait_until(lambda: server.service.ready, 10, "an MQTT session on a high descriptor")
        release(server.config, "kitchen", "1.0.0")
        server.call(server.service.tick)
        assert server.view("kitchen-1")["attempt"]["state"] == "pending"
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_progress_is_written_behind_by_the_tick_and_a_kill_9_loses_only_unflushed_progress(
        tmp_path: Path, broker: Mosquitto, prefix: str, processes: Any, probes: Any) -> None:
    """docs/reliability.md: progress is flushed by the half-second tick (one commit for a burst),
    so a crash loses at most the progress since the last tick, never an attempt."""
    config = write_config(tmp_path, mqtt=broker.url, prefix=prefix)
    proc = processes(config)
    admin = {"Authorization": basic_header("admin", "admin-secret")}
    conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=10)
    conn.request("POST", "/api/releases?image=sensor&version=1.0.0", body=make_test_image("1.0.0", platform="esp32"),
                 headers=admin)
    uploaded = conn.getresponse()
    uploaded.read()
    assert uploaded.status == 201
    conn.request("POST", "/api/devices/sensor-1/install", body=b"{}", headers=admin)
    attempt_id = json.loads(conn.getresponse().read())["attempts"][0]["id"]
    conn.close()
    state_file = tmp_path / "state.sqlite"

    def on_disk() -> tuple[str, int | None] | None:
        db = sqlite3.connect(f"file:{state_file}?mode=ro", uri=True)  # as a new process reads it
        try:
            row = db.execute("SELECT state, progress FROM attempts WHERE id = ?", (attempt_id,)).fetchone()
        finally:
            db.close()
        return None if row is None else (str(row[0]), row[1])

    device = probes(broker.url)
    status = f"{prefix}/sensor-1/status"
    device.publish(status, json.dumps({"state": "downloading", "version": "0.9.0", "progress": 40, "id": attempt_id}))
    # Nothing but the server's own tick writes it: no API request, no outcome to force a flush.
    wait_until(lambda: on_disk() == ("downloading", 40), 20, "the tick to write the reported progress")
    device.publish(status, json.dumps({"state": "downloading", "version": "0.9.0", "progress": 60, "id": attempt_id}))
    proc.kill()
    state, progress = on_disk() or ("lost", None)
    assert state == "downloading" and progress in (40, 60)  # 60 only if a tick came before the kill
    again = processes(config)
    conn = http.client.HTTPConnection("127.0.0.1", again.port, timeout=10)
    conn.request("GET", "/api/devices/sensor-1", headers=admin)
    attempt = json.loads(conn.getresponse().read())["attempt"]
    conn.close()
    assert (attempt["id"], attempt["state"], attempt["progress"]) == (attempt_id, "downloading", progress)
