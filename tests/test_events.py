"""Who hears of a change (fleet/events.py): the listeners, the outcome log, and the retry hook.

``AttemptLog`` is where every attempt transition goes: it stores it, clears a fixed problem, logs
each outcome once (docs/reliability.md: "each outcome logged once"), tells the dashboard's
listeners, and asks the announcer to decide a retry. Here on a real registry file.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import pytest

from tinyota_mqtt.core import attempts as att
from tinyota_mqtt.fleet.events import AttemptLog, Events
from tinyota_mqtt.fleet.views import attempt_display
from tinyota_mqtt.registry import Registry


def attempt(state: str = att.PENDING, **changes: Any) -> att.Attempt:
    fields: dict[str, Any] = {"id": "a1", "device": "kitchen-1", "version": "1.1.0", "from_version": "1.0.0",
                              "state": state, "created": 10.0, "deadline": 70.0, "updated": 10.0}
    return att.Attempt(**{**fields, **changes})


@pytest.fixture
def registry(tmp_path: Path) -> Any:
    made = Registry(tmp_path / "state.sqlite")
    yield made
    made.close()


def outcomes(caplog: Any) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "tinyota.service"]


def test_listeners_hear_each_event_until_they_unsubscribe_and_a_broken_one_is_logged() -> None:
    events = Events()
    heard: list[tuple[str, Any]] = []
    stop_a = events.watch(lambda e: heard.append(("a", e)))

    def broken(_event: Any) -> None:
        raise RuntimeError("boom")

    stop_broken = events.watch(broken)
    events.watch(lambda e: heard.append(("c", e)))
    assert len(events) == 3
    events.emit({"type": "x"})
    assert heard == [("a", {"type": "x"}), ("c", {"type": "x"})]  # the broken one stops no one
    stop_a()
    stop_a()  # twice is harmless
    stop_broken()
    assert len(events) == 1
    events.emit({"type": "y"})
    assert heard[-1] == ("c", {"type": "y"}) and len(heard) == 3


def test_a_broken_listener_is_logged_with_its_traceback(caplog: Any) -> None:
    events = Events()

    def broken(_event: Any) -> None:
        raise RuntimeError("boom")

    events.watch(broken)
    with caplog.at_level(logging.ERROR, "tinyota.service"):
        events.emit({"type": "x"})
    [record] = caplog.records
    assert record.getMessage() == "event listener failed" and record.exc_info is not None


def test_each_outcome_is_logged_once_at_its_level_with_what_went_wrong(registry: Registry, caplog: Any) -> None:
    log = AttemptLog(registry, Events())
    with caplog.at_level(logging.INFO, "tinyota.service"):
        log.opened(attempt())
        log.put(attempt(att.DOWNLOADING, progress=5))
        assert outcomes(caplog) == []  # under way is no outcome
        log.put(attempt(att.FAILED, error="flash write failed"))
        log.put(attempt(att.FAILED, error="flash write failed"))  # the same state again: no second line
        log.put(attempt(att.SUCCEEDED, id="a2"))
        log.put(attempt(att.SUCCEEDED, id="a3", late=True))
        log.put(attempt(att.TIMED_OUT, id="a4", error="no confirmation within 60 s"))
        log.put(attempt(att.CANCELLED, id="a5", error="superseded by 1.2.0"), logged=False)  # its caller says it
    assert outcomes(caplog) == [
        (logging.WARNING, "kitchen-1: update to 1.1.0 failed (flash write failed)"),
        (logging.INFO, "kitchen-1: update to 1.1.0 succeeded"),
        (logging.INFO, "kitchen-1: update to 1.1.0 succeeded (confirmed late)"),
        (logging.WARNING, "kitchen-1: update to 1.1.0 timed_out (no confirmation within 60 s)"),
    ]


def test_an_outcome_already_on_disk_is_not_logged_again(registry: Registry, caplog: Any) -> None:
    """The state before a transition is looked up on disk too: closed attempts live only there."""
    log = AttemptLog(registry, Events())
    log.put(attempt(att.FAILED, error="bad image"))
    registry.flush()  # closed: gone from memory, kept on disk
    caplog.clear()
    with caplog.at_level(logging.INFO, "tinyota.service"):
        log.put(attempt(att.FAILED, error="bad image", updated=20.0))
    assert outcomes(caplog) == []


def test_success_clears_the_devices_last_error(registry: Registry) -> None:
    registry.update_device("kitchen-1", last_error="flash write failed", last_error_at=5.0)
    log = AttemptLog(registry, Events())
    log.put(attempt(att.FAILED, error="flash write failed"))
    assert registry.device("kitchen-1").last_error == "flash write failed"  # a failure keeps it
    log.put(attempt(att.SUCCEEDED, id="a2"))
    record = registry.device("kitchen-1")
    assert (record.last_error, record.last_error_at) == (None, None)


def test_listeners_get_each_transition_with_its_words_and_only_a_change(registry: Registry) -> None:
    events = Events()
    heard: list[Any] = []
    events.watch(heard.append)
    log = AttemptLog(registry, events)
    first = attempt()
    log.opened(first)
    log.put(first)  # nothing changed
    done = attempt(att.SUCCEEDED)
    log.put(done)
    body = dataclasses.asdict(done)
    assert heard[-1] == {"type": "attempt", "attempt": {**body, "show": attempt_display(body)}}
    assert [e["attempt"]["state"] for e in heard] == [att.PENDING, att.SUCCEEDED]
    assert registry.attempt("a1") == done


def test_the_retry_hook_hears_each_end_but_a_cancel(registry: Registry) -> None:
    log = AttemptLog(registry, Events())
    log.put(attempt(att.FAILED, id="before-hook"))  # no hook set: nothing to call
    ended: list[str] = []
    log.on_end = lambda a: ended.append(f"{a.id} {a.state}")
    log.opened(attempt(id="b1"))
    log.put(attempt(att.FAILED, id="b1"))
    log.put(attempt(att.FAILED, id="b1"))  # told once
    log.put(attempt(att.TIMED_OUT, id="b2"))
    log.put(attempt(att.SUCCEEDED, id="b3"))
    log.put(attempt(att.CANCELLED, id="b4"))  # a cancel decides no retry
    assert ended == ["b1 failed", "b2 timed_out", "b3 succeeded"]
