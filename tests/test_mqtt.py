"""The MQTT side against a real mosquitto: announcements, registry, attempts, Home Assistant."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Mosquitto, Probe, ServerThread, release, tinyota, wait_until, write_config
from tests.test_http import request
from tinyota_mqtt.mqtt.simulator import SimDevice, SimSettings

ADMIN = {"user": "admin", "password": "admin-secret"}


@pytest.fixture
def setup(tmp_path: Path, broker: Mosquitto, prefix: str, servers: Any, probes: Any) -> Any:
    class Setup:
        config_path = write_config(tmp_path, mqtt=broker.url, prefix=prefix)
        pre = prefix

        def start(self) -> ServerThread:
            self.server: ServerThread = servers(self.config_path)
            wait_until(lambda: self.server.service.ready, 10, "the server to connect to mosquitto")
            return self.server

        def probe(self, **kw: Any) -> Probe:
            return probes(broker.url, **kw)  # type: ignore[no-any-return]

        def device_says(self, device: str, **status: Any) -> None:
            self.probe().publish(f"{prefix}/{device}/status", json.dumps(status), retain=True)

        def install(self, target: str, **body: Any) -> Any:
            resp, data = request(self.server, "POST", f"/api/{target}/install", body=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, **ADMIN)
            assert resp.status == 202, data
            return json.loads(data)["attempts"]

        def attempt(self, device: str) -> dict[str, Any]:
            return self.server.view(device)["attempt"] or {}

    return Setup()


def announcement(msg: Any) -> dict[str, Any]:
    return json.loads(msg.payload) if msg.payload else {}


def test_release_reaches_exactly_its_group_retained_qos1(setup: Any) -> None:
    server = setup.start()
    rel = release(server.config, "kitchen", "1.0.0", 30_000)
    early = setup.probe().subscribe(f"{setup.pre}/+/update", qos=1)
    server.call(server.service.tick)
    for device in ("kitchen-1", "kitchen-2"):  # on the broker: what a late subscriber gets is retained
        early.wait_for(f"{setup.pre}/{device}/update", lambda m: bool(m.payload))
    late = setup.probe().subscribe(f"{setup.pre}/+/update", qos=1)  # subscribes after the release
    for device in ("kitchen-1", "kitchen-2"):
        msg = late.wait_for(f"{setup.pre}/{device}/update")
        assert msg.retain and msg.qos == 1
        body = announcement(msg)
        assert set(body) == {"id", "version", "url", "size", "md5", "sha256", "image"}
        assert body["version"] == "1.0.0" and body["size"] == rel.size and body["md5"] == rel.md5
        assert body["image"] == "kitchen"  # part of the signed manifest (docs/protocol.md)
        assert body["url"] == f"http://127.0.0.1:{server.config.server.port}/fw/kitchen/1.0.0.bin"
        assert "pw-" not in msg.payload.decode() and "@" not in body["url"]
    ids = {announcement(late.last(f"{setup.pre}/{d}/update"))["id"] for d in ("kitchen-1", "kitchen-2")}
    assert len(ids) == 2  # every announcement has its own id
    # sensors update on command and loner is in no group: neither is told anything.
    marker = setup.probe()
    marker.publish(f"{setup.pre}/zz/marker", "x", retain=True)
    late.subscribe(f"{setup.pre}/zz/marker")
    late.wait_for(f"{setup.pre}/zz/marker")
    assert late.received(f"{setup.pre}/sensor-1/update") == []
    assert late.received(f"{setup.pre}/loner/update") == []


def test_update_confirmed_only_when_device_reports_the_target(setup: Any) -> None:
    server = setup.start()
    release(server.config, "kitchen", "1.0.0")
    server.call(server.service.tick)
    attempt = setup.attempt("kitchen-1")
    assert attempt["state"] == "pending" and attempt["version"] == "1.0.0"
    setup.device_says("kitchen-1", state="downloading", version="0.9.0", progress=40, id=attempt["id"])
    wait_until(lambda: setup.attempt("kitchen-1")["state"] == "downloading", 5, "downloading")
    assert server.view("kitchen-1")["progress"] == 40
    setup.device_says("kitchen-1", state="rebooting", version="0.9.0", id=attempt["id"])
    wait_until(lambda: setup.attempt("kitchen-1")["state"] == "flashing", 5, "flashing")
    setup.device_says("kitchen-1", state="idle", version="1.0.0")
    wait_until(lambda: setup.attempt("kitchen-1")["state"] == "succeeded", 5, "success")
    assert server.view("kitchen-1")["installed"] == "1.0.0"


def test_device_reported_failure(setup: Any) -> None:
    server = setup.start()
    release(server.config, "kitchen", "1.0.0")
    server.call(server.service.tick)
    attempt = setup.attempt("kitchen-2")
    setup.device_says("kitchen-2", state="failed", version="0.9.0", id=attempt["id"], error="MD5 check failed")
    wait_until(lambda: setup.attempt("kitchen-2")["state"] == "failed", 5, "failure")
    assert setup.attempt("kitchen-2")["error"] == "MD5 check failed"
    assert server.view("kitchen-2")["last_error"] == "MD5 check failed"


def test_refused_download_fails_the_attempt(setup: Any) -> None:
    server = setup.start()
    release(server.config, "kitchen", "1.0.0", 100_000)
    server.call(server.service.tick)
    resp, _ = request(server, "GET", "/fw/kitchen/1.0.0.bin",
                      headers={"x-ESP8266-free-space": "5000", "User-Agent": "ESP8266-http-Update"})
    assert resp.status == 403
    attempt = setup.attempt("kitchen-1")
    assert attempt["state"] == "failed" and "not enough free space" in attempt["error"]


def test_attempt_times_out(tmp_path: Path, broker: Mosquitto, prefix: str, servers: Any) -> None:
    server = servers(write_config(tmp_path, mqtt=broker.url, prefix=prefix, timeout="1s"))
    release(server.config, "kitchen", "1.0.0")
    server.call(server.service.tick)
    wait_until(lambda: (server.view("kitchen-1")["attempt"] or {}).get("state") == "timed_out", 10, "time-out")
    assert "no confirmation" in server.view("kitchen-1")["attempt"]["error"]


def test_install_rollback_and_cancel(setup: Any) -> None:
    server = setup.start()
    release(server.config, "sensor", "1.0.0")
    release(server.config, "sensor", "1.1.0")
    watch = setup.probe().subscribe(f"{setup.pre}/sensor-1/update")
    topic = f"{setup.pre}/sensor-1/update"
    [attempt] = setup.install("devices/sensor-1")
    assert attempt["version"] == "1.1.0"
    watch.wait_for(topic, lambda m: announcement(m).get("version") == "1.1.0")
    setup.device_says("sensor-1", state="idle", version="1.1.0")
    wait_until(lambda: setup.attempt("sensor-1")["state"] == "succeeded", 5, "success")
    # Rollback is an ordinary announcement of an older release.
    [back] = setup.install("devices/sensor-1", version="1.0.0")
    assert back["version"] == "1.0.0" and back["id"] != attempt["id"]
    watch.wait_for(topic, lambda m: announcement(m).get("id") == back["id"])
    resp, data = request(server, "POST", "/api/devices/sensor-1/cancel", **ADMIN)
    assert json.loads(data)["cancelled"] == ["sensor-1"]
    watch.wait_for(topic, lambda m: m.payload == b"")
    assert setup.attempt("sensor-1")["state"] == "cancelled"
    fresh = setup.probe().subscribe(f"{setup.pre}/+/update")
    fresh.publish(f"{setup.pre}/zz/marker", "x")
    fresh.subscribe(f"{setup.pre}/zz/marker")
    assert fresh.received(topic) == []  # the retained announcement is gone
    resp, data = request(server, "POST", "/api/devices/sensor-1/install", body=b'{"version": "9.9.9"}', **ADMIN)
    assert resp.status == 404 and "no release 9.9.9" in json.loads(data)["error"]


def test_group_install_and_cli(setup: Any) -> None:
    server = setup.start()
    release(server.config, "sensor", "2.0.0")
    out = tinyota("install", "--group", "sensors", "-c", str(setup.config_path))
    assert out.returncode == 0, out.stderr
    assert "announced 2.0.0 to sensor-1" in out.stdout
    server.call(server.service.registry.flush)
    status = tinyota("status", "--json", "-c", str(setup.config_path))
    views = {v["id"]: v for v in json.loads(status.stdout)}
    assert views["sensor-1"]["attempt"]["state"] == "pending" and views["sensor-1"]["target"] == "2.0.0"
    table = tinyota("status", "-c", str(setup.config_path)).stdout
    assert table.splitlines()[0].split() == ["DEVICE", "GROUP", "ONLINE", "INSTALLED", "TARGET", "STATE",
                                             "PROGRESS", "LAST", "SEEN", "HOLD", "LAST", "ERROR"]
    assert any(line.startswith("sensor-1") and "announced" in line for line in table.splitlines())
    out = tinyota("cancel", "sensor-1", "-c", str(setup.config_path))
    assert out.returncode == 0 and "sensor-1" in out.stdout
    history = tinyota("history", "sensor-1", "-c", str(setup.config_path))
    assert "cancelled" in history.stdout


def test_registry_survives_a_restart(setup: Any) -> None:
    server = setup.start()
    release(server.config, "kitchen", "1.0.0")
    server.call(server.service.tick)
    setup.device_says("kitchen-1", state="idle", version="1.0.0", platform="esp8266", free_space=123)
    wait_until(lambda: setup.attempt("kitchen-1").get("state") == "succeeded", 5, "success")
    server.stop()
    again = ServerThread(setup.config_path).start()
    try:
        view = again.view("kitchen-1")
        assert view["installed"] == "1.0.0" and view["free_space"] == 123 and view["platform"] == "esp8266"
        assert [a.state for a in again.call(again.service.registry.history, "kitchen-1")] == ["succeeded"]
        assert again.view("kitchen-2")["attempt"]["state"] == "pending"  # still open after the restart
    finally:
        again.stop()


def test_unknown_devices_are_listed_not_dropped(setup: Any) -> None:
    server = setup.start()
    setup.device_says("stranger", state="idle", version="3.0.0")
    wait_until(lambda: "stranger" in server.call(server.service.device_ids), 5, "the stranger to be listed")
    view = server.view("stranger")
    assert view["known"] is False and view["installed"] == "3.0.0" and view["group"] is None


@pytest.mark.parametrize("payload", [
    b"not json", b"\xff\xfe", b"[]", b"{}", b'{"state": "dancing"}', b'{"state": "idle", "version": 7}',
    b'{"state": "downloading", "progress": "half"}', b'{"state": "downloading", "progress": 400}',
    b'{"state": "idle", "free_space": true}', b'{"state": "idle", "version": "' + b"x" * 5000 + b'"}',
    b"x" * 100_000,
])
def test_malformed_status_is_logged_once_and_ignored(setup: Any, payload: bytes,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tinyota.service")
    server = setup.start()
    sender = setup.probe()
    for _ in range(3):
        sender.publish(f"{setup.pre}/kitchen-1/status", payload)
    sender.publish(f"{setup.pre}/kitchen-1/status", json.dumps({"state": "idle", "version": "5.5.5"}))
    wait_until(lambda: server.view("kitchen-1")["installed"] == "5.5.5", 5, "the good status after the bad")
    warnings = [r for r in caplog.records if "ignored status message" in r.getMessage()]
    assert len(warnings) == 1


def test_bad_availability_and_install_payloads_are_ignored(setup: Any) -> None:
    server = setup.start()
    sender = setup.probe()
    sender.publish(f"{setup.pre}/kitchen-1/availability", b"maybe")
    sender.publish(f"{setup.pre}/kitchen-1/install", b'{"version": 5}')
    sender.publish(f"{setup.pre}/kitchen-1/availability", b"online")
    wait_until(lambda: server.view("kitchen-1")["online"] is True, 5, "online")
    assert server.view("kitchen-1")["attempt"] is None


# -- Home Assistant ---------------------------------------------------------------------------------

def test_home_assistant_discovery_state_and_install(setup: Any) -> None:
    server = setup.start()
    release(server.config, "sensor", "1.2.0", notes="Faster boot")
    server.call(server.service.tick)
    ha = setup.probe().subscribe(f"{setup.pre}-ha/update/+/config").subscribe(f"{setup.pre}/+/state")
    config = json.loads(ha.wait_for(f"{setup.pre}-ha/update/tinyota_sensor-1/config").payload)
    assert config["device_class"] == "firmware" and config["unique_id"] == "tinyota_sensor-1"
    assert config["state_topic"] == f"{setup.pre}/sensor-1/state"
    assert config["command_topic"] == f"{setup.pre}/sensor-1/install" and config["payload_install"] == "install"
    # The server owns each entity's availability (a reboot inside an update is no outage).
    assert {a["topic"] for a in config["availability"]} == {f"{setup.pre}/sensor-1/entity",
                                                           f"{setup.pre}/server/availability"}
    assert config["availability_mode"] == "all"
    assert config["device"]["identifiers"] == ["tinyota_sensor-1"]
    for device in ("kitchen-1", "kitchen-2", "loner"):
        ha.wait_for(f"{setup.pre}-ha/update/tinyota_{device}/config")
    # Never heard from, so no installed version (never null: HA would drop the message); an
    # on-command group is still offered the new release.
    state = json.loads(ha.wait_for(f"{setup.pre}/sensor-1/state",
                                   lambda m: json.loads(m.payload).get("latest_version") == "1.2.0").payload)
    assert "installed_version" not in state
    assert state["in_progress"] is False
    # Pressing Install in Home Assistant publishes the payload_install on the command topic.
    setup.probe().publish(f"{setup.pre}/sensor-1/install", "install")
    ha.subscribe(f"{setup.pre}/sensor-1/update")
    ann = announcement(ha.wait_for(f"{setup.pre}/sensor-1/update", lambda m: bool(m.payload)))
    assert ann["version"] == "1.2.0"
    setup.device_says("sensor-1", state="downloading", version="1.0.0", progress=30, id=ann["id"])
    live = json.loads(ha.wait_for(f"{setup.pre}/sensor-1/state",
                                  lambda m: json.loads(m.payload)["in_progress"]).payload)
    assert live["update_percentage"] == 30 and live["latest_version"] == "1.2.0"
    assert live["installed_version"] == "1.0.0" and live["release_summary"] == "Faster boot"
    setup.device_says("sensor-1", state="idle", version="1.2.0")
    done = json.loads(ha.wait_for(f"{setup.pre}/sensor-1/state",
                                  lambda m: json.loads(m.payload).get("installed_version") == "1.2.0").payload)
    assert done["in_progress"] is False and done["latest_version"] == "1.2.0"


def test_discovery_resent_when_home_assistant_restarts(setup: Any) -> None:
    setup.start()
    ha = setup.probe().subscribe(f"{setup.pre}-ha/update/+/config")
    topic = f"{setup.pre}-ha/update/tinyota_kitchen-1/config"
    ha.wait_for(topic)
    before = len(ha.received(topic))
    setup.probe().publish(f"{setup.pre}-ha/status", "online")
    wait_until(lambda: len(ha.received(topic)) > before, 5, "discovery to be sent again")


def test_removed_device_has_its_discovery_cleared(setup: Any, servers: Any) -> None:
    server = setup.start()
    setup.device_says("kitchen-2", state="idle", version="1.0.0")
    wait_until(lambda: server.view("kitchen-2")["installed"] == "1.0.0", 5, "kitchen-2 reported")
    topic = f"{setup.pre}-ha/update/tinyota_kitchen-2/config"
    ha = setup.probe().subscribe(topic)
    ha.wait_for(topic, lambda m: bool(m.payload))
    server.stop()
    text = setup.config_path.read_text().replace("  kitchen-2: {group: kitchen-lights, password: pw-kitchen-2}\n", "")
    setup.config_path.write_text(text)
    servers(setup.config_path)
    ha.wait_for(topic, lambda m: m.payload == b"")  # an empty retained config removes the entity
    assert setup.probe().subscribe(topic).received(topic) == []


# -- the whole loop with simulated devices ----------------------------------------------------------

def test_simulated_devices_update_and_are_confirmed(setup: Any, broker: Mosquitto) -> None:
    server = setup.start()
    release(server.config, "kitchen", "1.0.0")
    server.call(server.service.tick)
    sims = [SimDevice(SimSettings(device_id=d, password=f"pw-{d}", broker=broker.url, version="1.0.0",
                                  prefix=setup.pre)) for d in ("kitchen-1", "kitchen-2", "sensor-1")]
    for sim in sims:
        sim.start()
    try:
        wait_until(lambda: all(server.view(d)["installed"] == "1.0.0" for d in ("kitchen-1", "kitchen-2")), 10,
                   "devices to report 1.0.0")
        release(server.config, "kitchen", "1.1.0", 200_000)
        server.call(server.service.tick)
        wait_until(lambda: all((server.view(d)["attempt"] or {}).get("state") == "succeeded"
                               and server.view(d)["installed"] == "1.1.0" for d in ("kitchen-1", "kitchen-2")),
                   30, "both kitchen devices to be confirmed on 1.1.0")
        assert sims[2].version == "1.0.0" and sims[2].updates == 0  # the other group was not touched
        assert server.view("kitchen-1")["online"] is True
    finally:
        for sim in sims:
            sim.stop()


def test_retained_reports_do_not_make_an_offline_device_look_online(setup: Any) -> None:
    before = setup.probe()
    before.publish(f"{setup.pre}/kitchen-1/status", json.dumps({"state": "idle", "version": "1.0.0"}), retain=True)
    before.publish(f"{setup.pre}/kitchen-1/availability", "offline", retain=True)
    before.publish(f"{setup.pre}/kitchen-2/install", "install", retain=True)  # a stale command
    server = setup.start()
    wait_until(lambda: server.view("kitchen-1")["installed"] == "1.0.0", 5, "the retained status")
    wait_until(lambda: server.view("kitchen-1")["online"] is False, 5, "the retained availability")
    assert server.view("kitchen-1")["last_seen"] is None  # old news says nothing about when it was seen
    assert server.view("kitchen-2")["attempt"] is None
