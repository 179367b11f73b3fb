"""The service façade itself (service.py): who is asking, the health the dashboard is sent, the
events of its tick, and its clock; on the fake bus of test_outcomes.py."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from tests.test_outcomes import Fleet, full_disk
from tinyota_mqtt.core.httpauth import basic_header
from tinyota_mqtt.errors import StateError
from tinyota_mqtt.service import Principal, steady_clock


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


def test_the_dashboard_is_told_each_change_of_health(fleet: Any, caplog: pytest.LogCaptureFixture) -> None:
    f: Fleet = fleet()
    health = events_of(f, "health")
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
