"""What device reports and the HTTP side's sightings do, seen in the device view, the attempt's
history, Home Assistant's state and the log.

The real Service on files, with the clock and the recording bus of tests/test_outcomes.py.
docs/protocol.md ("Status", "Targets and attempts") is the contract; the log budget is the one
it names (a WARNING the first time each device has each problem, at most 20 a minute).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

import pytest

from tests.test_announcer import device_events
from tests.test_outcomes import Fleet
from tinyota_mqtt.core import attempts as att
from tinyota_mqtt.fleet import reports


def entity_state(f: Fleet, device: str) -> dict[str, Any]:
    """The update entity's state as Home Assistant last got it."""
    return dict(json.loads(f.bus.on(f"{f.pre}/{device}/state")[-1]))


# -- here now, or what it said before ------------------------------------------------------------

def test_availability_live_and_retained(fleet: Any) -> None:
    f = fleet()
    views = device_events(f)
    topic = f"{f.pre}/sensor-1/availability"
    f.service.handle_message(topic, b"online", True)  # kept by the broker from before our time
    view = f.service.device_view("sensor-1")
    assert (view["online"], view["last_seen"]) == (True, None)
    f.clock.now += 5
    f.service.handle_message(topic, b"offline")  # its last will, now
    view = f.service.device_view("sensor-1")
    assert (view["online"], view["last_seen"]) == (False, f.clock.now)
    assert [v["online"] for v in views if v["id"] == "sensor-1"] == [True, False]


def test_a_retained_status_says_what_the_device_last_said_not_that_it_is_here(fleet: Any) -> None:
    f = fleet()
    views = device_events(f)
    f.say("sensor-1", retained=True, state="idle", version="1.0.0")
    view = f.service.device_view("sensor-1")
    assert (view["installed"], view["online"], view["last_seen"]) == ("1.0.0", None, None)
    f.clock.now += 5
    f.say("sensor-1", state="idle", version="1.0.0")  # live: it is here
    view = f.service.device_view("sensor-1")
    assert (view["online"], view["last_seen"]) == (True, f.clock.now)
    assert [v["installed"] for v in views if v["id"] == "sensor-1"] == ["1.0.0", "1.0.0"]


# -- failures: the device's words and the server's ---------------------------------------------

def test_a_failure_the_server_saw_first_keeps_both_reasons(fleet: Any) -> None:
    f = fleet()
    rel = f.release("sensor", "2.0.0")
    (attempt,) = f.service.install(["sensor-1"])
    f.clock.now += 3
    views = device_events(f)
    why = "not enough free space: 1.0 MiB free, the image needs 2.0 MiB"
    f.service.download_refused("sensor-1", rel, why)
    ended = f.service.registry.attempt(attempt.id)
    assert (ended.state, ended.error, ended.updated) == (att.FAILED, why, f.clock.now)
    view = f.service.device_view("sensor-1")
    assert (view["last_error"], view["last_error_at"], view["last_seen"]) == (why, f.clock.now, f.clock.now)
    assert [v["last_error"] for v in views if v["id"] == "sensor-1"] == [why]
    # The device only knows it got a 403; the view says both.
    f.say("sensor-1", state="failed", version="1.0.0", id=attempt.id, error="Forbidden (403)")
    assert f.service.device_view("sensor-1")["last_error"] == f"Forbidden (403): {why}"
    f.say("sensor-1", state="failed", version="1.0.0", id=attempt.id, error=why)  # the same words: once
    assert f.service.device_view("sensor-1")["last_error"] == why


def test_a_refused_download_fails_only_the_attempt_it_is_for(fleet: Any) -> None:
    f = fleet()
    old = f.release("sensor", "1.0.0")
    f.release("sensor", "2.0.0")
    f.service.download_refused("sensor-1", old, "Forbidden")  # no attempt open: noted, nothing to fail
    assert f.service.device_view("sensor-1")["last_error"] == "Forbidden"
    (attempt,) = f.service.install(["sensor-1"], "2.0.0")
    f.service.download_refused("sensor-1", old, "not this device's image")  # some other request
    assert f.service.registry.attempt(attempt.id).state == att.PENDING


# -- downloads as the HTTP side sees them ---------------------------------------------------------

def test_downloads_count_for_the_attempt_whose_bytes_they_are(fleet: Any) -> None:
    f = fleet()
    rel = f.release("sensor", "2.0.0")
    f.service.download_started("sensor-1", rel)  # fetching on its own, nothing announced
    assert f.attempt("sensor-1") is None
    (attempt,) = f.service.install(["sensor-1"])
    f.clock.now += 3
    other = dataclasses.replace(rel, sha256="0" * 64)  # the same version with other bytes: replaced
    f.service.download_started("sensor-1", other)
    assert f.service.registry.attempt(attempt.id).state == att.PENDING
    views = device_events(f)
    f.service.download_started("sensor-1", rel)
    started = f.service.registry.attempt(attempt.id)
    assert (started.state, started.updated) == (att.DOWNLOADING, f.clock.now)
    assert entity_state(f, "sensor-1")["in_progress"] is True
    f.service.download_finished("sensor-1", rel)
    assert [v["attempt"]["download"] for v in views if v["id"] == "sensor-1"] == [att.SERVING, att.SERVED]
    f.clock.now += 30  # the test config's attempt_timeout
    f.service.tick()
    assert f.service.registry.attempt(attempt.id).state == att.TIMED_OUT
    assert entity_state(f, "sensor-1")["in_progress"] is False  # Home Assistant is told it ended


# -- who may fill the device list ---------------------------------------------------------------

def test_the_cap_on_unknown_devices_counts_only_unknown_ones(fleet: Any, monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(reports, "MAX_UNKNOWN_DEVICES", 3)
    f = fleet()
    for device in ("kitchen-1", "sensor-1"):  # configured devices do not count against it
        f.say(device, state="idle", version="1.0.0")
    with caplog.at_level(logging.WARNING, "tinyota.service"):
        for n in range(5):
            f.say(f"stranger-{n}", state="idle", version="1.0.0")
        f.say("stranger-0", state="idle", version="1.1.0")  # one it took is still heard
    strangers = [r.id for r in f.service.registry.devices() if r.id.startswith("stranger")]
    assert strangers == ["stranger-0", "stranger-1", "stranger-2"]
    assert f.service.registry.device("stranger-0").version == "1.1.0"
    warned = [r.getMessage() for r in caplog.records if "too many unknown devices" in r.getMessage()]
    assert len(warned) == 2 and "stranger-3" in warned[0] and "stranger-4" in warned[1], warned


# -- what the log says, and how much -------------------------------------------------------------

def test_bad_messages_and_refused_commands_are_logged_with_who_and_why(fleet: Any,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    f = fleet()
    with caplog.at_level(logging.WARNING, "tinyota.service"):
        f.service.handle_message(f"{f.pre}/sensor-1/status", b"not json")
        f.service.handle_message(f"{f.pre}/sensor-1/install", b'{"version": "1.0.0"}')  # version_commands off
        f.service.handle_message(f"{f.pre}/stranger/install", b"install")
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 3, said
    assert said[0].startswith("sensor-1: ignored status message: ") and "JSON" in said[0], said
    assert said[1].startswith("sensor-1: install command refused: ") and "mqtt.version_commands" in said[1]
    assert "`tinyota install DEVICE --version V`" in said[1], said  # what to do instead
    assert said[2].startswith("stranger: install command refused: ") and "unknown device" in said[2], said
    assert said[2].endswith("stranger"), said  # no hint to add, and nothing in its place


def test_the_log_budget_is_per_minute_and_the_rest_goes_to_debug(fleet: Any,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    f = fleet()

    def junk(device: str) -> list[logging.LogRecord]:
        caplog.clear()
        f.service.handle_message(f"{f.pre}/{device}/status", b"not json")
        return list(caplog.records)

    def names_it(record: logging.LogRecord, device: str) -> bool:
        return record.getMessage().startswith(f"{device}: ignored status message: ")

    with caplog.at_level(logging.DEBUG, "tinyota.service"):
        (first,) = junk("junk-0")  # the first problem: one warning, no count of hidden ones
        assert first.levelno == logging.WARNING and names_it(first, "junk-0")
        (again,) = junk("junk-0")  # the same problem again: debug only
        assert again.levelno == logging.DEBUG and names_it(again, "junk-0")
        for n in range(1, 20):
            (record,) = junk(f"junk-{n}")
            assert record.levelno == logging.WARNING
        (over,) = junk("junk-20")  # the 21st in this minute
        assert over.levelno == logging.DEBUG and names_it(over, "junk-20")
        f.clock.now += 60  # a minute after the first: a new minute
        summary, shown = junk("junk-21")
    assert summary.levelno == logging.WARNING and summary.getMessage().startswith("1 more problem(s)")
    assert shown.levelno == logging.WARNING and names_it(shown, "junk-21")
