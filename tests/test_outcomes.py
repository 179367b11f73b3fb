"""Outcomes that must survive crashes, restarts and lies: the service driven directly.

These run the real Service, Registry and FirmwareStore on real files, with a clock the test moves
and a bus that records what would go to the broker. What needs the broker itself (the retained
state after a restart, forged retained messages) is in tests/test_trust.py against mosquitto.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import full_disk, release, write_config
from tinyota_mqtt.config import load_config
from tinyota_mqtt.core import attempts as att
from tinyota_mqtt.core import protocol
from tinyota_mqtt.core.image import make_test_image
from tinyota_mqtt.errors import StateError
from tinyota_mqtt.fleet import reports
from tinyota_mqtt.mqtt.client import FIRST_RETRY, MAX_RETRY, next_delay
from tinyota_mqtt.registry import Registry
from tinyota_mqtt.service import Service, steady_clock
from tinyota_mqtt.store import FirmwareStore


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """A Bus that keeps what was published, in order; as a Link, a session the test opens and ends."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bool]] = []
        self.check: Any = None
        self.up = False
        self.session = 0

    def connect(self, service: Service) -> None:
        """What the MQTT link does when the broker accepts it: a new session, then the callback."""
        self.session += 1
        self.up = True
        service.on_connected()

    def drop(self, service: Service) -> None:
        self.up = False
        service.on_disconnected()

    def publish(self, topic: str, payload: bytes, *, retain: bool, qos: int = 1) -> None:
        if self.check is not None:
            self.check(topic, payload)
        self.sent.append((topic, payload, retain))

    def on(self, topic: str) -> list[bytes]:
        return [p for t, p, _r in self.sent if t == topic]


class Fleet:
    """A service on files in tmp_path, the sample groups of tests/conftest.py (or ``text``, a
    config in write_config's format), and helpers."""

    def __init__(self, tmp_path: Path, *, confirm: str = "report", extra: str = "", more_kitchens: int = 0,
                 text: str | None = None) -> None:
        """``more_kitchens``: devices kitchen-3, kitchen-4, … added to the automatic group."""
        path = write_config(tmp_path, confirm=confirm, text=text)
        if extra:
            body = path.read_text()
            path.write_text(body.replace("confirm: " + confirm + "}", f"confirm: {confirm}, {extra}}}"))
        if more_kitchens:
            with path.open("a") as config:
                config.writelines(f"  kitchen-{n}: {{group: kitchen-lights, password: pw-kitchen-{n}}}\n"
                                  for n in range(3, 3 + more_kitchens))
        self.config = load_config(path)
        self.clock = Clock()
        self.bus = Recorder()
        self.service = Service(self.config, clock=self.clock)
        self.service.bus = self.bus
        self.pre = self.config.mqtt.prefix

    def release(self, image: str, version: str, **kw: Any) -> Any:
        return release(self.config, image, version, **kw)

    def say(self, device: str, retained: bool = False, **status: Any) -> None:
        self.service.handle_message(f"{self.pre}/{device}/status", json.dumps(status).encode(), retained)

    def sync(self, payload: bytes | None = None) -> None:
        """The broker hands back our last sync marker (or ``payload``): what it held is all in."""
        topic = f"{self.pre}/server/sync"
        self.service.handle_message(topic, self.bus.on(topic)[-1] if payload is None else payload)

    def attempt(self, device: str) -> att.Attempt | None:
        return self.service.registry.open_attempt(device) or self.service.registry.last_attempt(device)

    def announced(self, device: str) -> dict[str, Any]:
        sent = self.bus.on(f"{self.pre}/{device}/update")
        return json.loads(sent[-1]) if sent and sent[-1] else {}

    def close(self) -> None:
        self.service.close()



# -- commit before publish ------------------------------------------------------------------------

def test_an_announcement_leaves_only_after_its_attempt_is_on_disk(fleet: Any) -> None:
    f = fleet()
    f.release("sensor", "2.0.0")
    checked: list[str] = []

    def on_disk(topic: str, payload: bytes) -> None:
        if topic.endswith("/update") and payload:
            attempt_id = json.loads(payload)["id"]
            db = sqlite3.connect(f"file:{f.config.server.state}?mode=ro", uri=True)
            try:  # another connection, as a restarted server would read it
                row = db.execute("SELECT state FROM attempts WHERE id = ?", (attempt_id,)).fetchone()
            finally:
                db.close()
            assert row == ("pending",), f"announcement {attempt_id} published before its attempt was committed"
            checked.append(attempt_id)

    f.bus.check = on_disk
    # The path Home Assistant's Install button takes: an MQTT command, no API flush behind it.
    f.service.handle_message(f"{f.pre}/sensor-1/install", b"install")
    f.release("kitchen", "1.0.0")
    f.service.tick()  # the automatic group's announcements
    assert len(checked) == 3, checked


def test_a_release_to_a_group_is_one_log_line_and_a_few_devices_a_line_each(fleet: Any, caplog: Any) -> None:
    """A thousand devices must not mean two thousand lines (an announcement and the open attempt
    it supersedes, each), and one device still gets its own line with the attempt's id."""
    f = fleet(more_kitchens=4)  # six devices in the automatic group
    announced = lambda: [r.getMessage() for r in caplog.records if r.getMessage().startswith("announced")]  # noqa: E731
    f.release("kitchen", "1.0.0")
    with caplog.at_level(logging.INFO, "tinyota.service"):
        f.service.tick()
    assert announced() == ["announced kitchen 1.0.0 to 6 devices (kitchen-1, kitchen-2, kitchen-3, …)"]
    first = {d: f.attempt(d) for d in ("kitchen-1", "kitchen-6")}
    assert all(a is not None and a.version == "1.0.0" for a in first.values())

    caplog.clear()
    f.release("kitchen", "1.1.0")
    with caplog.at_level(logging.INFO, "tinyota.service"):
        f.service.tick()
    assert announced() == ["announced kitchen 1.1.0 to 6 devices (kitchen-1, kitchen-2, kitchen-3, …); "
                           "superseding 6 open attempts"]
    assert not [r for r in caplog.records if "cancelled" in r.getMessage()], "one line per superseded attempt"
    old = f.service.registry.attempt(first["kitchen-6"].id)  # type: ignore[union-attr]
    assert old is not None and old.state == att.CANCELLED and old.error == "superseded by 1.1.0"

    caplog.clear()
    f.release("sensor", "2.0.0")
    with caplog.at_level(logging.INFO, "tinyota.service"):
        [started] = f.service.install(["sensor-1"])
    assert announced() == [f"announced sensor 2.0.0 to sensor-1 (attempt {started.id})"]
    caplog.clear()
    with caplog.at_level(logging.INFO, "tinyota.service"):
        [again] = f.service.install(["sensor-1"])
    assert announced() == [f"announced sensor 2.0.0 to sensor-1 (attempt {again.id}; superseding {started.id}, 2.0.0)"]


def test_state_file_write_failure_announces_nothing_and_says_so_once(fleet: Any, caplog: Any) -> None:
    f = fleet()
    f.release("sensor", "2.0.0")
    for n in range(30):  # a state file and WAL bigger than the limit below
        f.say(f"stranger-{n}", state="idle", version="1.0.0", error="x" * 200)
    f.service.tick()
    with full_disk():
        with pytest.raises(StateError):
            f.service.install(["sensor-1"])
        assert f.bus.on(f"{f.pre}/sensor-1/update") == []
        with caplog.at_level(logging.ERROR, "tinyota.service"):
            for _ in range(5):
                f.service.tick()
        health = f.service.health()
    assert len([r for r in caplog.records if "state file" in r.getMessage()]) == 1
    assert health["status"] == "degraded" and "state file" in health["problem"]
    f.service.tick()  # room again: the waiting announcement goes out after its commit
    assert f.service.health()["status"] == "ok"
    assert json.loads(f.bus.on(f"{f.pre}/sensor-1/update")[-1])["version"] == "2.0.0"


# -- what counts as a confirmation ----------------------------------------------------------------

def test_a_failure_without_an_id_confirms_nothing(fleet: Any) -> None:
    f = fleet()
    f.release("sensor", "2.0.0")
    (attempt,) = f.service.install(["sensor-1"])
    f.say("sensor-1", state="failed", version="2.0.0", error="some older trouble")
    assert f.attempt("sensor-1").state == att.PENDING
    f.say("sensor-1", state="idle", version="2.0.0")
    assert f.attempt("sensor-1").state == att.SUCCEEDED


def test_download_and_report_both_needed_when_the_group_says_so(fleet: Any) -> None:
    f = fleet(confirm="download+report")
    rel = f.release("sensor", "2.0.0")
    f.service.install(["sensor-1"])
    f.say("sensor-1", state="idle", version="2.0.0")  # says it runs it, never downloaded it
    attempt = f.attempt("sensor-1")
    assert attempt.state == att.FAILED and attempt.error.startswith("no download"), attempt

    f.say("sensor-1", state="idle", version="1.0.0")
    f.service.install(["sensor-1"])
    f.service.download_started("sensor-1", rel)
    f.service.download_finished("sensor-1", rel)
    f.say("sensor-1", state="idle", version="2.0.0")
    assert f.attempt("sensor-1").state == att.SUCCEEDED


def test_a_report_that_outruns_the_last_byte_waits_for_it(fleet: Any) -> None:
    f = fleet(confirm="download+report")
    rel = f.release("sensor", "2.0.0")
    f.service.install(["sensor-1"])
    f.service.download_started("sensor-1", rel)
    f.say("sensor-1", state="idle", version="2.0.0")
    assert f.attempt("sensor-1").state == att.FLASHING
    f.service.download_finished("sensor-1", rel)
    assert f.attempt("sensor-1").state == att.SUCCEEDED


def test_a_late_confirmation_is_recorded_as_what_it_is(fleet: Any) -> None:
    f = fleet()
    f.release("sensor", "2.0.0")
    f.service.install(["sensor-1"])
    f.clock.now += 31  # the test config's attempt_timeout is 30 s
    f.service.tick()
    assert f.attempt("sensor-1").state == att.TIMED_OUT
    f.say("sensor-1", state="idle", version="2.0.0")
    attempt = f.attempt("sensor-1")
    assert attempt.state == att.SUCCEEDED and attempt.late


def test_the_service_clock_does_not_follow_a_wall_clock_jump(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = steady_clock()
    before = clock()
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3 * 3600)  # set three hours forward
    assert clock() - before < 60
    assert steady_clock()() - before > 3 * 3600 - 60  # a restart takes the wall clock as it is


# -- stale and suppressed announcements -----------------------------------------------------------

def test_a_replaced_release_is_announced_again_with_its_new_bytes(fleet: Any) -> None:
    f = fleet()
    f.release("kitchen", "1.0.0")
    f.service.tick()
    first = f.announced("kitchen-1")
    store = FirmwareStore(f.config.server.store)
    path = f.config.server.store.parent / "again.bin"
    path.write_bytes(make_test_image("1.0.0", 50_000, fill=os.urandom(64)))
    replaced = store.add_file(path, "kitchen", "1.0.0", replace=True)
    f.service.tick()
    second = f.announced("kitchen-1")
    assert second["md5"] == replaced.md5 != first["md5"] and second["id"] != first["id"]
    old = f.service.registry.attempt(first["id"])
    assert old.state == att.CANCELLED and "replaced" in old.error


def test_a_deleted_release_is_withdrawn_at_once(fleet: Any) -> None:
    f = fleet()
    f.release("kitchen", "1.0.0")
    f.service.tick()
    attempt_id = f.announced("kitchen-1")["id"]
    FirmwareStore(f.config.server.store).delete("kitchen", "1.0.0")
    f.service.tick()
    assert f.bus.on(f"{f.pre}/kitchen-1/update")[-1] == b""  # cleared on the broker
    assert f.service.registry.attempt(attempt_id).state == att.CANCELLED


def test_a_device_back_on_its_old_version_is_told_again_after_the_back_off(fleet: Any) -> None:
    f = fleet()
    f.release("kitchen", "1.0.0")
    f.say("kitchen-1", state="idle", version="0.9.0")
    f.service.tick()
    f.say("kitchen-1", state="idle", version="1.0.0")
    assert f.attempt("kitchen-1").state == att.SUCCEEDED
    before = len(f.bus.on(f"{f.pre}/kitchen-1/update"))
    f.say("kitchen-1", state="idle", version="0.9.0")  # its new image did not stick
    f.service.tick()
    assert len(f.bus.on(f"{f.pre}/kitchen-1/update")) == before  # not at once: back-off
    f.clock.now += 61
    f.service.tick()
    assert f.attempt("kitchen-1").state == att.PENDING and f.attempt("kitchen-1").version == "1.0.0"


def test_transient_failures_are_retried_with_growing_back_off_then_given_up(fleet: Any) -> None:
    f = fleet(extra="retries: 2, retry_backoff: 10s")
    f.release("kitchen", "1.0.0")
    f.service.tick()
    ids = [f.announced("kitchen-1")["id"]]
    for wait in (10, 20):
        f.say("kitchen-1", state="failed", version="0.9.0", id=ids[-1], error="Wrong HTTP Code")
        f.clock.now += wait - 1
        f.service.tick()
        assert f.announced("kitchen-1")["id"] == ids[-1]  # still backing off
        f.clock.now += 1
        f.service.tick()
        assert f.announced("kitchen-1")["id"] != ids[-1]
        ids.append(f.announced("kitchen-1")["id"])
    f.say("kitchen-1", state="failed", version="0.9.0", id=ids[-1], error="Wrong HTTP Code")
    f.clock.now += 3600
    f.service.tick()
    assert f.announced("kitchen-1")["id"] == ids[-1]  # two retries, then no more
    assert len(set(ids)) == 3


def test_a_bad_image_is_not_retried_by_itself(fleet: Any) -> None:
    f = fleet()
    f.release("kitchen", "1.0.0")
    f.service.tick()
    first = f.announced("kitchen-1")["id"]
    f.say("kitchen-1", state="failed", version="0.9.0", id=first, error="MD5 check failed")
    f.clock.now += 24 * 3600
    f.service.tick()
    assert f.announced("kitchen-1")["id"] == first
    (again,) = f.service.install(["kitchen-1"])  # asking on purpose does
    assert again.id != first


# -- commands and holds ---------------------------------------------------------------------------

def test_cancel_holds_the_device_until_the_next_install(fleet: Any) -> None:
    f = fleet()
    f.release("kitchen", "1.0.0")
    f.service.tick()
    assert f.service.cancel(["kitchen-1"]) == ["kitchen-1"]
    assert f.bus.on(f"{f.pre}/kitchen-1/update")[-1] == b""
    assert f.service.target_version("kitchen-1") is None
    f.release("kitchen", "1.1.0")
    f.service.tick()
    assert f.bus.on(f"{f.pre}/kitchen-1/update")[-1] == b""  # held: the new release is not for it
    assert f.announced("kitchen-2")["version"] == "1.1.0"
    f.service.install(["kitchen-1"])
    assert f.announced("kitchen-1")["version"] == "1.1.0"


def test_a_new_announcement_cancels_the_open_attempt(fleet: Any) -> None:
    f = fleet()
    f.release("sensor", "1.0.0")
    f.release("sensor", "1.1.0")
    (first,) = f.service.install(["sensor-1"], "1.0.0")
    (second,) = f.service.install(["sensor-1"], "1.1.0")
    old = f.service.registry.attempt(first.id)
    assert old.state == att.CANCELLED and old.error == "superseded by 1.1.0"
    assert f.service.registry.open_attempt("sensor-1").id == second.id


def test_install_without_a_version_hands_the_device_back_to_its_group(fleet: Any) -> None:
    f = fleet()
    f.release("kitchen", "1.0.0")
    f.release("kitchen", "1.1.0")
    f.service.install(["kitchen-1"], "1.0.0")  # a rollback sticks ...
    f.say("kitchen-1", state="idle", version="1.0.0")
    f.release("kitchen", "1.2.0")
    f.service.tick()
    assert f.announced("kitchen-1")["version"] == "1.0.0"  # ... while the group moves on
    f.service.install(["kitchen-1"])
    assert f.service.registry.device("kitchen-1").commanded is None
    f.release("kitchen", "1.3.0")
    f.service.tick()
    assert f.announced("kitchen-1")["version"] == "1.3.0"


def test_install_commands_over_mqtt(fleet: Any, caplog: Any) -> None:
    f = fleet()
    f.release("sensor", "1.0.0")
    f.release("sensor", "1.1.0")
    topic = f"{f.pre}/sensor-1/install"
    f.service.handle_message(topic, b"install", True)  # a retained leftover: not a fresh command
    f.service.handle_message(topic, b"{not json", False)
    f.service.handle_message(topic, b'{"version": 7}', False)
    with caplog.at_level(logging.WARNING, "tinyota.service"):
        f.service.handle_message(topic, b'{"version": "1.0.0"}', False)  # a downgrade anyone could order
    assert f.attempt("sensor-1") is None
    assert any("mqtt.version_commands" in r.getMessage() for r in caplog.records)
    f.service.handle_message(topic, b"install", False)
    assert f.attempt("sensor-1").version == "1.1.0"


def test_version_commands_when_allowed(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    path.write_text(path.read_text().replace("mqtt:\n", "mqtt:\n  version_commands: true\n"))
    service = Service(load_config(path))
    try:
        release(service.config, "sensor", "1.0.0")
        release(service.config, "sensor", "1.1.0")
        service.handle_message(f"{service.config.mqtt.prefix}/sensor-1/install", b'{"version": "1.0.0"}')
        assert service.registry.open_attempt("sensor-1").version == "1.0.0"
    finally:
        service.close()


# -- Home Assistant facts that follow the device --------------------------------------------------

def test_in_progress_from_the_first_byte_and_sw_version_follows(fleet: Any) -> None:
    f = fleet()
    rel = f.release("sensor", "2.0.0")
    f.say("sensor-1", state="idle", version="1.0.0")
    f.service.install(["sensor-1"])
    state = f"{f.pre}/sensor-1/state"
    assert json.loads(f.bus.on(state)[-1])["in_progress"] is False  # announced is not in progress
    f.service.download_started("sensor-1", rel)
    assert json.loads(f.bus.on(state)[-1])["in_progress"] is True
    config_topic = f"{f.config.homeassistant.discovery_prefix}/update/tinyota_sensor-1/config"
    f.say("sensor-1", state="idle", version="2.0.0")
    assert json.loads(f.bus.on(config_topic)[-1])["device"]["sw_version"] == "2.0.0"


def test_removed_entities_are_cleared_once_not_at_every_home_assistant_start(fleet: Any) -> None:
    f = fleet()
    f.say("gone-1", state="idle", version="1.0.0")
    birth = f.config.homeassistant.status_topic
    for _ in range(3):
        f.service.handle_message(birth, b"online")
    removal = f"{f.config.homeassistant.discovery_prefix}/update/tinyota_gone-1/config"
    assert f.bus.on(removal) == [b""]


# -- what the API and the dashboard show -----------------------------------------------------------

def test_the_device_view_follows_reports_installs_and_cancels(fleet: Any) -> None:
    f = fleet()
    rel = f.release("sensor", "2.0.0")
    f.say("sensor-1", state="idle", version="1.0.0", platform="esp32s3", free_space=2_000_000)
    v = f.service.device_view("sensor-1")
    assert (v["installed"], v["state"], v["platform"], v["free_space"], v["attempt"]) == \
        ("1.0.0", "idle", "esp32s3", 2_000_000, None)
    (attempt,) = f.service.install(["sensor-1"], "2.0.0")
    v = f.service.device_view("sensor-1")
    assert v["announced"] == "2.0.0" and v["attempt"]["id"] == attempt.id and v["pinned"] == "2.0.0"
    assert v["target"] == f.service.target_version("sensor-1") == "2.0.0"
    f.service.download_started("sensor-1", rel)
    f.say("sensor-1", state="downloading", version="1.0.0", progress=42, id=attempt.id)
    v = f.service.device_view("sensor-1")
    assert v["progress"] == 42 and v["show"]["busy"] and v["show"]["progress"] == 42
    f.service.cancel(["sensor-1"])
    v = f.service.device_view("sensor-1")
    assert v["held"] and v["announced"] is None and v["attempt"]["state"] == att.CANCELLED
    assert v["show"]["held"].startswith("yes")


def test_the_device_list_is_the_config_then_strangers_that_reported(fleet: Any) -> None:
    f = fleet()
    f.say("stranger-2", state="idle", version="1.0.0")
    f.say("kitchen-2", state="idle", version="1.0.0")
    assert f.service.device_ids() == [*f.config.devices, "stranger-2"]
    assert f.service.device_view("stranger-2")["known"] is False


def test_each_device_view_is_its_own(fleet: Any) -> None:
    f = fleet()
    f.release("sensor", "2.0.0")
    f.release("kitchen", "1.0.0")
    f.service.tick()  # kitchen-lights updates automatically: its devices are told
    f.say("sensor-1", state="idle", version="1.0.0")
    (sensor,) = f.service.install(["sensor-1"])
    kitchen = f.service.device_view("kitchen-1")
    assert kitchen["attempt"]["device"] == "kitchen-1" and kitchen["announced"] == "1.0.0"
    assert kitchen["target"] == "1.0.0" and kitchen["installed"] is None
    assert f.service.device_view("sensor-1")["attempt"]["id"] == sensor.id
    assert f.service.device_view("loner")["attempt"] is None


# -- the server's own retained topics ------------------------------------------------------------

def test_a_forged_retained_announcement_is_cleared_once_it_has_stood(fleet: Any,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """The guard, through the service: a retained announcement the server never wrote is cleared
    (an empty retained message) once it still stands a moment later, and logged once per topic."""
    f = fleet()
    topic = f"{f.pre}/sensor-1/update"
    forged = json.dumps({"version": "6.6.6", "url": "http://evil/fw.bin"}).encode()
    with caplog.at_level(logging.WARNING, "tinyota.service"):
        f.service.handle_message(topic, forged, True)
        f.service.tick()
        assert f.bus.on(topic) == []  # not at once: it may be our own publish still in flight
        f.clock.now += 0.9
        f.service.tick()
        assert f.bus.on(topic) == []
        f.clock.now += 0.1
        f.service.tick()
        assert f.bus.on(topic) == [b""]
        f.service.handle_message(topic, forged, True)  # again, later
        f.clock.now += 1
        f.service.tick()
    assert f.bus.on(topic) == [b"", b""]
    assert all(retain for t, _p, retain in f.bus.sent if t == topic)  # a retained repair replaces it
    warned = [r for r in caplog.records if "did not write" in r.getMessage()]
    assert len(warned) == 1 and topic in warned[0].getMessage()


def test_the_guard_restores_what_the_server_sent_and_lets_its_own_echo_settle(fleet: Any) -> None:
    f = fleet()
    f.release("sensor", "2.0.0")
    f.service.install(["sensor-1"])
    topic = f"{f.pre}/sensor-1/update"
    ours = f.bus.on(topic)[-1]
    f.service.handle_message(topic, b'{"version":"0.0.1"}', True)  # someone overwrites it
    f.clock.now += 0.5
    f.service.handle_message(topic, ours, True)  # ...and our copy arrives again before it settled
    f.clock.now += 1
    f.service.tick()
    assert f.bus.on(topic) == [ours]  # nothing to put right
    f.service.handle_message(topic, b'{"version":"0.0.1"}', True)
    f.clock.now += 1
    f.service.tick()
    assert f.bus.on(topic) == [ours, ours]  # put back what the server sent, not an empty one


def test_the_guard_leaves_topics_that_are_not_the_servers(fleet: Any) -> None:
    f = fleet()
    for topic in (f"{f.pre}/stranger-1/update",  # not a configured device
                  f"{f.pre}/sensor-1/install"):  # a command topic: not retained state of ours
        f.service.handle_message(topic, b"forged", True)
    f.clock.now += 2
    f.service.tick()
    assert [t for t, _p, _r in f.bus.sent if t.endswith(("/update", "/install"))] == []


def test_a_forged_discovery_config_and_server_offline_are_put_right(fleet: Any) -> None:
    f = fleet()
    f.service.attach(f.bus)
    f.bus.connect(f.service)
    config_topic = f"{f.config.homeassistant.discovery_prefix}/update/tinyota_sensor-1/config"
    ours = f.bus.on(config_topic)[-1]
    state_topic = f"{f.pre}/sensor-1/state"  # the update entity's state
    our_state = f.bus.on(state_topic)[-1]
    availability = f"{f.pre}/server/availability"
    f.service.handle_message(config_topic, b'{"name":"pwned"}', True)
    f.service.handle_message(state_topic, b'{"latest_version":"6.6.6"}', True)
    f.service.handle_message(availability, b"offline", True)  # a forged "server offline"
    f.clock.now += 1
    f.service.tick()
    assert f.bus.on(config_topic) == [ours, ours]  # sent again over the forgery
    assert f.bus.on(state_topic) == [our_state, our_state]
    assert f.bus.on(availability)[-1] == b"online"
    f.service.handle_message(availability, b"offline", True)
    update = f"{f.pre}/sensor-1/update"
    f.service.handle_message(update, b'{"version":"6.6.6"}', True)
    f.bus.up = False  # while we are not connected, "offline" is true: leave it, but not the rest
    f.clock.now += 1
    f.service.tick()
    assert f.bus.on(availability) == [b"online"]
    assert f.bus.on(update) == [b""]


# -- what a flood can do --------------------------------------------------------------------------

def test_unknown_devices_are_capped(fleet: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reports, "MAX_UNKNOWN_DEVICES", 3)
    f = fleet()
    for n in range(6):
        f.say(f"stranger-{n}", state="idle", version="1.0.0")
    strangers = [r.id for r in f.service.registry.devices() if r.id.startswith("stranger")]
    assert strangers == ["stranger-0", "stranger-1", "stranger-2"]


def test_silent_unknown_devices_are_forgotten(fleet: Any) -> None:
    f = fleet()
    f.say("stranger", state="idle", version="1.0.0")
    f.service.tick()
    assert f.service.registry.knows("stranger")
    f.clock.now += 8 * 24 * 3600
    f.service.tick()
    assert not f.service.registry.knows("stranger")
    assert "sensor-1" in f.service.device_ids()


def test_bad_messages_from_many_ids_log_a_bounded_number_of_lines(fleet: Any, caplog: Any) -> None:
    f = fleet()
    with caplog.at_level(logging.WARNING, "tinyota.service"):
        for n in range(200):
            f.service.handle_message(f"{f.pre}/junk-{n}/status", b"not json")
        f.clock.now += 61
        f.service.handle_message(f"{f.pre}/junk-x/status", b"not json")
    lines = [r.getMessage() for r in caplog.records]
    assert 20 <= len(lines) <= 23, len(lines)
    assert any("more problem(s)" in line and "180" in line for line in lines)


# -- the state file -------------------------------------------------------------------------------

def test_a_zero_length_state_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    path.write_bytes(b"")
    with pytest.raises(StateError, match="empty"):
        Registry(path)


def test_a_state_file_of_schema_1_is_read_and_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE devices (id TEXT PRIMARY KEY, online INTEGER, state TEXT, version TEXT, progress INTEGER,
            last_seen REAL, platform TEXT, free_space INTEGER, last_error TEXT, commanded TEXT, announced TEXT,
            announce_id TEXT, held INTEGER NOT NULL DEFAULT 0);
        CREATE TABLE attempts (id TEXT PRIMARY KEY, device TEXT NOT NULL, version TEXT NOT NULL, from_version TEXT,
            state TEXT NOT NULL, created REAL NOT NULL, deadline REAL NOT NULL, updated REAL NOT NULL,
            error TEXT, progress INTEGER);
        INSERT INTO devices VALUES ('kitchen-1', 1, 'idle', '1.0.0', NULL, 5.0, 'esp8266', 1000, NULL, '1.0.0',
            '1.1.0', 'abc', 0);
        INSERT INTO attempts VALUES ('abc', 'kitchen-1', '1.1.0', '1.0.0', 'pending', 1.0, 100.0, 1.0, NULL, NULL);
        PRAGMA user_version=1;
    """)
    db.close()
    registry = Registry(path)
    try:
        assert registry.device("kitchen-1").commanded == "1.0.0"
        attempt = registry.open_attempt("kitchen-1")
        assert attempt is not None and attempt.id == "abc" and attempt.download == "" and not attempt.late
        registry.put_attempt(att.on_status(attempt, protocol.Status("downloading", "1.0.0", 5, "abc"), 2.0))
        registry.flush()
    finally:
        registry.close()


# -- the MQTT link's back-off ---------------------------------------------------------------------

def test_reconnects_back_off_after_a_refused_login_and_reset_after_an_accepted_one() -> None:
    delay = FIRST_RETRY
    seen = []
    for _ in range(7):
        delay = next_delay(delay, accepted=False)
        seen.append(delay)
    assert seen == [2.0, 4.0, 8.0, 16.0, MAX_RETRY, MAX_RETRY, MAX_RETRY]
    assert next_delay(MAX_RETRY, accepted=True) == FIRST_RETRY


def test_an_open_attempt_from_a_schema_1_file_stays_under_way(fleet: Any) -> None:
    f = fleet()
    f.release("sensor", "2.0.0")
    (attempt,) = f.service.install(["sensor-1"])
    # What a schema-1 file holds: the same open attempt, with no sha256 recorded.
    f.service.registry.put_attempt(dataclasses.replace(attempt, sha256=None))
    f.service.reconcile()
    f.service.announcer.republish()
    assert f.service.registry.open_attempt("sensor-1").id == attempt.id
    assert f.announced("sensor-1")["id"] == attempt.id


def test_a_late_confirmation_never_reopens_an_attempt(fleet: Any) -> None:
    f = fleet(confirm="download+report")
    rel = f.release("sensor", "2.0.0")
    f.service.install(["sensor-1"])
    f.service.download_started("sensor-1", rel)  # started, never seen to finish
    f.clock.now += 31
    f.service.tick()
    f.say("sensor-1", state="idle", version="2.0.0")
    attempt = f.attempt("sensor-1")
    assert not attempt.open and attempt.state == att.TIMED_OUT


def test_after_a_broker_outage_deadlines_wait_for_the_retained_state_again(fleet: Any) -> None:
    f = fleet()
    f.service.attach(f.bus)

    def connect_and_sync(*retained: tuple[str, dict[str, Any]]) -> None:
        f.bus.connect(f.service)
        for device, status in retained:  # what the broker holds arrives before our marker
            f.say(device, retained=True, **status)
        f.sync()

    connect_and_sync()
    f.release("sensor", "2.0.0")
    (attempt,) = f.service.install(["sensor-1"])
    f.bus.drop(f.service)  # the broker goes away for longer than the deadline
    f.clock.now += 120
    f.service.tick()
    assert f.service.registry.attempt(attempt.id).state == att.PENDING
    connect_and_sync(("sensor-1", {"state": "idle", "version": "2.0.0"}))
    after = f.service.registry.attempt(attempt.id)
    assert after.state == att.SUCCEEDED and not after.late


def test_ready_holds_for_the_session_whose_retained_state_is_in_not_a_newer_one(fleet: Any) -> None:
    """The link runs on its own thread and tells the service later: a session that ended and a new
    one accepted before the service heard of either must not count as synced, nor be judged on."""
    f = fleet()
    f.service.attach(f.bus)
    assert f.service.mqtt_connected is False and not f.service.ready
    f.bus.connect(f.service)
    assert f.service.mqtt_connected is True and not f.service.ready  # the retained state is not in yet
    assert f.service.health()["mqtt"] == "connected"
    f.sync()
    assert f.service.ready
    f.release("sensor", "2.0.0")
    (attempt,) = f.service.install(["sensor-1"])
    f.bus.session += 1  # dropped and reconnected on the link's thread; no callback has run yet
    assert f.service.mqtt_connected is True and not f.service.ready
    f.clock.now += 120
    f.service.tick()  # a deadline passed, but the new session's retained state is not in
    assert f.service.registry.attempt(attempt.id).state == att.PENDING
    f.bus.up = False
    assert f.service.health()["mqtt"] == "disconnected" and not f.service.ready
    f.bus.drop(f.service)
    f.bus.connect(f.service)
    assert not f.service.ready
    f.sync()
    assert f.service.ready and f.service.health()["mqtt"] == "connected"


def test_the_sync_wait_gives_up_for_the_session_it_waited_in(fleet: Any) -> None:
    """A broker that never echoes our marker (an ACL that hides it): judge after the wait anyway,
    but only while that session lasts."""
    f = fleet()
    f.service.attach(f.bus)
    f.bus.connect(f.service)
    f.clock.now += 10
    f.service.tick()
    assert f.service.ready
    f.bus.session += 1
    assert not f.service.ready


def test_without_mqtt_the_service_judges_and_says_so(fleet: Any) -> None:
    f = fleet()
    assert f.service.mqtt_connected is None and f.service.health()["mqtt"] == "off"
    f.release("sensor", "2.0.0")
    (attempt,) = f.service.install(["sensor-1"])
    f.clock.now += 31
    f.service.tick()
    assert f.service.registry.attempt(attempt.id).state == att.TIMED_OUT


def test_a_retry_after_a_served_download_is_confirmed_by_the_report(fleet: Any) -> None:
    f = fleet(confirm="download+report", extra="retry_backoff: 10s")
    rel = f.release("sensor", "2.0.0")
    f.say("sensor-1", state="idle", version="1.0.0")
    (first,) = f.service.install(["sensor-1"])
    f.service.download_started("sensor-1", rel)
    f.service.download_finished("sensor-1", rel)  # it took the image whole, then rebooted slowly
    f.clock.now += 31
    f.service.tick()
    f.clock.now += 10
    f.service.tick()  # the retry
    retry_attempt = f.service.registry.open_attempt("sensor-1")
    assert retry_attempt is not None and retry_attempt.id != first.id
    f.say("sensor-1", state="idle", version="2.0.0")
    assert f.attempt("sensor-1").state == att.SUCCEEDED


def test_an_uncommitted_announcement_survives_a_reconnect_and_a_repair(fleet: Any) -> None:
    f = fleet()
    f.release("sensor", "2.0.0")
    for n in range(30):  # a state file and WAL bigger than the limit below
        f.say(f"stranger-{n}", state="idle", version="1.0.0", error="x" * 200)
    f.service.tick()
    topic = f"{f.pre}/sensor-1/update"
    with full_disk():
        with pytest.raises(StateError):
            f.service.install(["sensor-1"])
        f.service.on_connected()  # a reconnect re-publishes only committed attempts
        assert f.bus.on(topic) == []
        f.service.publisher.publish(topic, b"", retain=True, force=True)  # the guard's repair
    f.service.tick()  # room again: the announcement goes out after its commit
    assert json.loads(f.bus.on(topic)[-1])["version"] == "2.0.0"
