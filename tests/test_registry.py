"""The registry on a real SQLite file: what a restart reads back, what a failed write leaves.

Every test here reopens the file with a new Registry, as a restarted server does, or reads it with
a second connection, as ``tinyota status`` does. No broker, no HTTP: these run in the `fleet`
mutation scope and must stay fast (the one that waits out SQLite's lock timeout takes 5 s).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pytest

from tests.test_outcomes import full_disk
from tinyota_mqtt.core import attempts as att
from tinyota_mqtt.core import rollout as ro
from tinyota_mqtt.errors import StateError
from tinyota_mqtt.registry import SCHEMA_VERSION, Registry


def shown(value: Any) -> str:
    """What the API and the dashboard show of a record: its fields as JSON (``True``, not ``1``)."""
    return json.dumps(asdict(value), sort_keys=True)


def attempt(attempt_id: str, device: str, created: float, state: str = att.PENDING, **kw: Any) -> att.Attempt:
    return att.Attempt(attempt_id, device, "2.0.0", "1.0.0", state, created, created + 600, created, **kw)


def rollout(rollout_id: str, **kw: Any) -> ro.Rollout:
    return ro.Rollout(rollout_id, "kitchen", "2.0.0", ("kitchen",), ro.Policy(),
                      (ro.Member("kitchen-1", 0, attempt="a1", tries=1),), 1, **kw)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state.sqlite"


def test_a_restart_reads_back_every_fact_as_it_was_shown(tmp_path: Path) -> None:
    path = tmp_path / "var" / "lib" / "tinyota" / "state.sqlite"  # folders that do not exist yet
    registry = Registry(path)
    registry.update_device("on", online=True, state="idle", version="1.0.0", held=True, commanded="1.0.0")
    registry.update_device("off", online=False, version="1.0.0")
    registry.update_device("never-heard", platform="esp32")  # online unknown: None, not "offline"
    registry.put_attempt(attempt("open", "on", 10.0, needs_download=True, download=att.SERVING))
    registry.put_attempt(attempt("late", "off", 5.0, state=att.SUCCEEDED, late=True, progress=100))
    registry.put_rollout(rollout("1", state=ro.RUNNING, log=(ro.Entry(1.0, "admin", "started"),)))
    registry.put_rollout(rollout("2"))
    before = ([shown(d) for d in registry.devices()], shown(registry.open_attempt("on")),
              [shown(a) for a in registry.history("off")], [ro.to_json(r) for r in registry.rollouts()])
    registry.close()

    again = Registry(path)
    try:
        after = ([shown(d) for d in again.devices()], shown(again.open_attempt("on")),
                 [shown(a) for a in again.history("off")], [ro.to_json(r) for r in again.rollouts()])
        assert after == before
        assert [d.online for d in again.devices()] == [None, False, True]  # never-heard, off, on
        assert again.open_attempt("off") is None  # the closed attempt stays on disk only
        assert again.rollout("1") == registry.rollout("1")
    finally:
        again.close()


def test_the_file_can_be_opened_on_one_thread_and_served_on_another(path: Path) -> None:
    registry = Registry(path)  # the Server is built before its loop thread starts (tests/conftest.py)
    failed: list[BaseException] = []

    def serve() -> None:
        try:
            registry.update_device("kitchen-1", version="1.0.0")
            registry.put_attempt(attempt("a1", "kitchen-1", 1.0))
            registry.flush()
            assert registry.last_attempt("kitchen-1") is not None
            registry.close()
        except BaseException as exc:  # handed to the test's thread, which fails on it
            failed.append(exc)

    worker = threading.Thread(target=serve)
    worker.start()
    worker.join(10)
    assert not worker.is_alive() and failed == []
    assert Registry(path).device("kitchen-1").version == "1.0.0"


def test_a_file_from_a_newer_tinyota_is_refused_and_says_what_to_do(path: Path) -> None:
    Registry(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StateError) as refused:
        Registry(path)
    assert f"newer TinyOTA (schema {SCHEMA_VERSION + 1})" in refused.value.message
    assert f"mv {path} {path}.broken" in (refused.value.hint or "")
    assert "attempt history is lost" in (refused.value.hint or "")


def test_a_damaged_file_is_refused_with_the_reason(path: Path, tmp_path: Path) -> None:
    registry = Registry(path)
    for n in range(300):
        registry.update_device(f"kitchen-{n:03}", version="1.0.0", last_error="x" * 50)
    registry.close()
    data = bytearray(path.read_bytes())
    page = data.index(b"kitchen-150") // 4096 * 4096  # a leaf page of the devices table
    for offset in range(page + 8, page + 48):  # its cell pointers (after the 8-byte page header)
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(StateError, match="integrity check says") as refused:
        Registry(path)
    assert "page" in refused.value.message  # SQLite's own words about what it found

    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database, only some text " * 100)
    with pytest.raises(StateError, match="not a database"):
        Registry(garbage)


def test_a_rollout_that_cannot_be_read_back_refuses_the_file_with_the_reason(path: Path) -> None:
    registry = Registry(path)
    registry.put_rollout(rollout("1"))
    registry.close()
    body = ro.to_json(rollout("1"))
    del body["policy"]
    db = sqlite3.connect(path)
    db.execute("UPDATE rollouts SET body = ?", (json.dumps(body),))
    db.commit()
    db.close()
    try:
        ro.from_json(body)
    except KeyError as exc:
        reason = str(exc)
    with pytest.raises(StateError) as refused:
        Registry(path)
    assert refused.value.message.endswith(f"is unusable: {reason}")


def test_forgetting_a_device_drops_it_and_its_attempts_at_once(path: Path) -> None:
    registry = Registry(path)
    registry.update_device("gone", version="1.0.0")
    registry.put_attempt(attempt("old", "gone", 1.0, state=att.FAILED))
    registry.update_device("kept", version="1.0.0")
    registry.put_attempt(attempt("other", "kept", 1.0))
    registry.flush()
    registry.put_attempt(attempt("new", "gone", 2.0))  # open, not yet flushed
    registry.update_device("gone", state="downloading")
    registry.forget_device("gone")
    registry.forget_device("never-seen")  # nothing to forget is not an error

    assert not registry.knows("gone") and registry.open_attempt("gone") is None
    assert registry.attempt("new") is None and registry.attempt("old") is None
    assert registry.last_attempt("gone") is None and registry.open_attempts() == [registry.attempt("other")]
    registry.flush()  # what was waiting for the forgotten device is not written back
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)  # at once: before any close
    try:
        assert db.execute("SELECT id FROM devices").fetchall() == [("kept",)]
        assert db.execute("SELECT id FROM attempts").fetchall() == [("other",)]
    finally:
        db.close()
    registry.close()
    again = Registry(path)
    assert [d.id for d in again.devices()] == ["kept"] and again.history("gone") == []


def test_forgetting_a_device_on_a_full_disk_fails_plainly_and_works_once_there_is_room(path: Path) -> None:
    registry = Registry(path)
    for n in range(30):  # a file and WAL bigger than full_disk()'s limit
        registry.update_device(f"kitchen-{n}", version="1.0.0", last_error="x" * 200)
    registry.flush()
    with full_disk(), pytest.raises(StateError, match="cannot write the state file") as failed:
        registry.forget_device("kitchen-3")
    assert failed.value.hint == "check free disk space and permissions"
    registry.forget_device("kitchen-3")
    registry.close()
    assert not Registry(path).knows("kitchen-3")


def test_a_write_that_times_out_on_another_lock_does_not_wedge_the_registry(path: Path) -> None:
    """Someone holds the file's write lock (a second server, `sqlite3 state.sqlite` and BEGIN):
    the write fails after SQLite's 5 s wait, and the next one works once the lock is gone."""
    registry = Registry(path)
    registry.update_device("kitchen-1", version="1.0.0")
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StateError, match=r"cannot write the state file.*locked") as failed:
            registry.flush()
        assert "free disk space" in (failed.value.hint or "")
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert registry.dirty  # kept for the next flush, which now succeeds
    registry.flush()
    registry.forget_device("kitchen-1")
    registry.update_device("kitchen-2", version="1.0.0")
    registry.close()
    again = Registry(path)
    assert [d.id for d in again.devices()] == ["kitchen-2"]


def test_the_newest_attempt_is_found_in_memory_and_on_disk(path: Path) -> None:
    registry = Registry(path)
    # Twenty devices with two open attempts each: the newer one must win whatever the set's order.
    for n in range(20):
        registry.put_attempt(attempt(f"b-{n}", f"d{n}", 2.0))
        registry.put_attempt(attempt(f"a-{n}", f"d{n}", 1.0))
    assert {registry.open_attempt(f"d{n}").id for n in range(20)} == {f"b-{n}" for n in range(20)}  # type: ignore[union-attr]

    registry.put_attempt(attempt("open", "kitchen-1", 1.0))
    registry.put_attempt(attempt("done", "kitchen-1", 2.0, state=att.SUCCEEDED))
    registry.flush()  # "done" now lives on disk only, "open" in memory
    assert registry.last_attempt("kitchen-1").id == "done"  # type: ignore[union-attr]
    registry.put_attempt(attempt("unflushed", "kitchen-1", 3.0))
    assert registry.last_attempt("kitchen-1").id == "unflushed"  # type: ignore[union-attr]
    assert [a.id for a in registry.recent_attempts("kitchen-1", 2)] == ["unflushed", "done"]
    assert registry.last_attempt("nobody") is None and registry.open_attempt("nobody") is None


def test_history_is_newest_first_bounded_and_includes_what_was_not_flushed(path: Path) -> None:
    registry = Registry(path)
    for n in range(4):
        registry.put_attempt(attempt(f"a{n}", "kitchen-1", float(n), state=att.FAILED, error=f"try {n}"))
    registry.flush()
    registry.put_attempt(attempt("a4", "kitchen-1", 4.0))
    history = registry.history("kitchen-1", limit=3)
    assert [a.id for a in history] == ["a4", "a3", "a2"]
    assert history[1] == attempt("a3", "kitchen-1", 3.0, state=att.FAILED, error="try 3")
    assert len(registry.history("kitchen-1")) == 5 and registry.history("kitchen-2") == []
    for n in range(5, 60):
        registry.put_attempt(attempt(f"a{n}", "kitchen-1", float(n), state=att.FAILED))
    assert len(registry.history("kitchen-1")) == 50  # what the dashboard promises (docs/dashboard.md)


def test_rollouts_are_numbered_and_listed_in_order(path: Path) -> None:
    registry = Registry(path)
    assert registry.next_rollout_id() == "1" and registry.rollouts() == []
    for rollout_id in ("10", "2", "9"):  # put out of order; "10" sorts before "2" as text
        registry.put_rollout(rollout(rollout_id))
    assert [r.id for r in registry.rollouts()] == ["2", "9", "10"]
    assert registry.next_rollout_id() == "11"
    assert registry.rollout("9") == rollout("9") and registry.rollout("3") is None


def test_a_change_that_changes_nothing_writes_nothing(path: Path) -> None:
    """A device repeating its status, a rollout tick with nothing new: no transaction, no fsync."""
    registry = Registry(path)
    registry.update_device("kitchen-1", version="1.0.0", online=True)
    registry.put_rollout(rollout("1"))
    registry.flush()
    assert not registry.dirty
    registry.update_device("kitchen-1", version="1.0.0", online=True)
    registry.put_rollout(rollout("1"))
    assert not registry.dirty
    registry.put_rollout(rollout("1", state=ro.RUNNING))
    assert registry.dirty


def test_only_a_flush_that_says_so_skips_the_fsync(path: Path) -> None:
    """A power cut cannot be staged in a test; what decides whether a commit survives one is the
    connection's synchronous level (2: FULL, an fsync per commit; 1: NORMAL), so read that."""
    registry = Registry(path)

    def level() -> int:
        return int(registry._db.execute("PRAGMA synchronous").fetchone()[0])

    assert level() == 2
    registry.update_device("kitchen-1", version="1.0.0")
    registry.flush(durable=False)  # the one exception: a download served (fleet/reports.py)
    assert level() == 1
    registry.update_device("kitchen-1", version="1.1.0")
    registry.flush()
    assert level() == 2
    registry.update_device("kitchen-1", version="1.2.0")
    registry.flush(durable=False)
    registry.forget_device("kitchen-2")  # "on disk at once" is durable too
    assert level() == 2
    registry.close()
    assert Registry(path).device("kitchen-1").version == "1.2.0"


def test_a_device_record_comes_back_with_its_flags_as_flags(path: Path) -> None:
    registry = Registry(path)
    registry.update_device("held", held=True, online=True)
    registry.update_device("free", online=False)
    registry.flush()
    registry.close()
    again = Registry(path)
    assert again.device("held") == replace(registry.device("held"))
    assert again.device("held").held is True and again.device("free").held is False
    assert again.device("free").online is False


def test_a_device_first_named_with_nothing_but_defaults_is_still_recorded(path: Path) -> None:
    """E.g. an install without a version for a configured device that never reported
    (commanded=None, held=False): the device is known from then on, across a restart."""
    registry = Registry(path)
    registry.update_device("quiet-1", commanded=None, held=False)
    assert registry.knows("quiet-1") and registry.dirty
    registry.close()
    assert Registry(path).knows("quiet-1")
