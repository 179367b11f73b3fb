"""The service façade itself (service.py): who is asking, the health the dashboard is sent, the
events of its tick, and its clock; on the fake bus of test_outcomes.py."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BASE_CONFIG
from tests.tasmota_standin import TasmotaStandIn
from tests.test_outcomes import Fleet, full_disk
from tinyota_mqtt.core import attempts as att
from tinyota_mqtt.core.httpauth import basic_header
from tinyota_mqtt.core.image import make_test_image
from tinyota_mqtt.core.passwords import hash_password
from tinyota_mqtt.core.protocol import Announcement
from tinyota_mqtt.errors import StateError, TinyOTAError
from tinyota_mqtt.service import Principal, steady_clock
from tinyota_mqtt.signing import generate, verify


def events_of(f: Fleet, kind: str) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    f.service.watch(lambda event: seen.append(event) if event["type"] == kind else None)
    return seen


def test_who_is_asking(fleet: Any) -> None:
    f: Fleet = fleet()
    service = f.service
    assert service.authenticate(basic_header("admin", "admin-secret")) == Principal("admin", admin=True)
    assert service.authenticate(basic_header("sensor-1", "pw-sensor-1")) == Principal("sensor-1", admin=False)
    assert service.authenticate(basic_header("sensor-1", "pw-kitchen-1")) is None  # another device's password
    assert service.authenticate(basic_header("nobody", "admin-secret")) is None
    assert service.authenticate(None) is None
    assert service.authenticate("Bearer xyz") is None
    assert service.authentication_is_cheap(None) and service.authentication_is_cheap("Bearer xyz")


def test_a_hashed_password_is_dear_until_it_was_accepted_once(fleet: Any) -> None:
    hashed = hash_password("pw-sensor-1", iterations=1000)
    f: Fleet = fleet(text=BASE_CONFIG.replace("password: pw-sensor-1}}", f"password: '{hashed}'}}}}"))
    right, wrong = basic_header("sensor-1", "pw-sensor-1"), basic_header("sensor-1", "guess")
    # The HTTP layer runs a dear check in a worker thread, off the event loop (http/base.py).
    assert not f.service.authentication_is_cheap(right) and not f.service.authentication_is_cheap(wrong)
    assert f.service.authenticate(right) == Principal("sensor-1", admin=False)
    assert f.service.authentication_is_cheap(right)  # the same password again: from the cache
    assert not f.service.authentication_is_cheap(wrong)  # a guess still pays the KDF
    assert f.service.authentication_is_cheap(basic_header("kitchen-1", "pw-kitchen-1"))  # plain in the config


def test_with_a_signing_key_announcements_are_signed_and_health_gives_its_public_half(
        fleet: Any, tmp_path: Path) -> None:
    key = tmp_path / "signing.key"
    public = generate(key).public_key
    f: Fleet = fleet(text=BASE_CONFIG.replace("  admin:", f"  signing_key: {key}\n  admin:"))
    assert f.service.health()["signing_public_key"] == public
    f.release("sensor", "2.0.0")
    f.service.install(["sensor-1"])
    body = json.loads(f.bus.on(f"{f.pre}/sensor-1/update")[-1])
    assert verify(public, Announcement(**body, device="sensor-1").manifest(), body["sig"])


def test_the_store_a_service_opens_keeps_the_configs_upload_limit(fleet: Any, tmp_path: Path) -> None:
    f: Fleet = fleet(text=BASE_CONFIG.replace("  admin:", "  limits: {{max_upload_bytes: 1KiB}}\n  admin:"))
    image = tmp_path / "sensor-2.0.0.bin"
    image.write_bytes(make_test_image("2.0.0", 4096, platform="esp32"))
    with pytest.raises(TinyOTAError) as caught:
        f.service.store.add_file(image, "sensor", "2.0.0", platform="esp32")
    assert caught.value.message == "release is larger than the 1024 byte limit"
    assert f.service.store.releases() == []


TASMOTA = BASE_CONFIG.split("images:")[0] + """\
images:
  plug: {{platform: esp8266}}
groups:
  plugs: {{image: plug, kind: tasmota, auto_update: false, attempt_timeout: {timeout}, confirm: {confirm}}}
devices:
  plug-1: {{group: plugs, topic: plug-1, password: pw-plug-1}}
"""


def test_a_tasmota_device_is_shown_as_one_and_a_stray_with_the_lines_that_would_adopt_it(fleet: Any) -> None:
    f: Fleet = fleet(text=TASMOTA)
    assert f.service.device_view("plug-1")["kind"] == "tasmota"
    assert "tasmota/discovery/+/config" in f.service.subscriptions()
    assert f"{f.pre}/+/status" in f.service.subscriptions()
    stray = TasmotaStandIn("mqtt://127.0.0.1:9", "stray")  # never started: only its discovery message
    stray.stop()
    f.service.handle_message(f"tasmota/discovery/{stray.mac}/config", stray.discovery(), True)
    view = f.service.device_view("stray")
    assert view["kind"] == "tasmota"
    assert view["adopt"] == f"devices:\n  stray: {{kind: tasmota, group: plugs, mac: {stray.mac}}}"


def test_the_release_a_device_may_fetch_is_its_target(fleet: Any) -> None:
    f: Fleet = fleet()
    made = f.release("sensor", "2.0.0")
    assert f.service.target_release("sensor-1") is None  # a manual group: nothing until an install
    f.service.install(["sensor-1"])
    assert f.service.target_release("sensor-1") == made
    assert f.service.target_release("kitchen-1") is None  # its image has no release


def test_the_dashboard_is_told_each_change_of_health(fleet: Any, caplog: pytest.LogCaptureFixture) -> None:
    f: Fleet = fleet()
    health = events_of(f, "health")
    with caplog.at_level(logging.INFO, "tinyota.service"):
        f.service.tick()
    assert caplog.records == [] and health == []  # a first tick has nothing to say about the state file
    f.service.attach(f.bus)
    f.bus.connect(f.service)
    assert health == [{"type": "health", "status": "ok", "mqtt": "connected", "devices": 4, "releases": 0,
                       "signing_public_key": None}]
    f.bus.drop(f.service)
    assert [(e["status"], e["mqtt"]) for e in health][1:] == [("ok", "disconnected")]
    f.release("sensor", "2.0.0")
    for n in range(30):  # a state file bigger than full_disk's limit
        f.say(f"stranger-{n}", state="idle", version="1.0.0", error="x" * 200)
    f.service.tick()
    del health[:]
    with full_disk(), caplog.at_level(logging.INFO, "tinyota.service"):
        with pytest.raises(StateError):
            f.service.install(["sensor-1"])
        for _ in range(3):
            f.service.tick()
    assert [e["status"] for e in health] == ["degraded"]  # once, not at every tick
    assert health[0]["problem"] == f.service.health()["problem"]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and errors[0].getMessage().startswith(health[0]["problem"])
    caplog.clear()
    with caplog.at_level(logging.INFO, "tinyota.service"):
        f.service.tick()  # room again
    assert [e["status"] for e in health] == ["degraded", "ok"] and "problem" not in health[1]
    assert "the state file is writable again" in [r.getMessage() for r in caplog.records]
    f.service.tick()
    assert len(health) == 2  # and said once


def test_a_new_release_is_an_event_but_the_first_look_at_the_store_is_not(fleet: Any) -> None:
    f: Fleet = fleet()
    f.release("sensor", "1.0.0")
    releases = events_of(f, "releases")
    f.service.tick()  # start-up: what was there already
    assert releases == []
    f.service.tick()
    f.release("sensor", "1.1.0")
    f.service.tick()
    assert releases == [{"type": "releases"}]


def test_the_steady_clock_moves_with_the_monotonic_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    mono = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: mono[0])
    clock = steady_clock()
    start = clock()
    assert abs(start - time.time()) < 5  # it starts at the wall clock
    mono[0] += 90
    assert clock() - start == pytest.approx(90)  # (approx of the epoch itself would allow half an hour)


def test_nothing_is_judged_before_the_brokers_retained_state_and_at_most_10_s_after_connecting(
        fleet: Any, caplog: pytest.LogCaptureFixture) -> None:
    f: Fleet = fleet()
    f.release("sensor", "2.0.0")
    (attempt,) = f.service.install(["sensor-1"])  # its deadline: 30 s
    f.service.attach(f.bus)
    f.clock.now += 25
    f.sync(b"early")  # a marker while none is awaited (a stale one, or anybody's): ignored
    f.bus.connect(f.service)
    assert not f.service.ready
    f.sync(b"not ours")
    f.clock.now += 9  # past the deadline, 9 s after connecting
    f.service.tick()
    assert f.service.registry.attempt(attempt.id).state == att.PENDING and not f.service.ready
    f.clock.now += 1
    with caplog.at_level(logging.WARNING, "tinyota.service"):
        f.service.tick()  # 10 s: judged without it, and said why
    assert f.service.registry.attempt(attempt.id).state == att.TIMED_OUT and f.service.ready
    assert [r.getMessage() for r in caplog.records] == [
        f"the broker did not echo our sync marker within 10 s (may the server read {f.pre}/server/sync?); "
        "judging without it", "sensor-1: update to 2.0.0 timed_out (no confirmation within 30 s)"]


def test_the_echo_of_the_marker_ends_the_wait_at_once(fleet: Any, caplog: pytest.LogCaptureFixture) -> None:
    f: Fleet = fleet()
    f.service.attach(f.bus)
    f.bus.connect(f.service)
    with caplog.at_level(logging.DEBUG, "tinyota.service"):
        f.sync()
    assert f.service.ready
    assert [r.getMessage() for r in caplog.records] == ["retained state received; judging deadlines and targets"]
    f.bus.drop(f.service)
    f.bus.connect(f.service)  # a new session waits for its own marker, not the last one
    assert not f.service.ready
    f.sync()
    assert f.service.ready
    sync = f"{f.pre}/server/sync"
    assert [retain for t, _p, retain in f.bus.sent if t == sync] == [False, False]  # never kept by the broker
    assert f.bus.on(sync)[0] != f.bus.on(sync)[1]  # each session its own marker
