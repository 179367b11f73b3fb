"""Every device's last known state and its history of update attempts, in one SQLite file.

The registry answers from memory and writes behind: changes mark rows dirty and ``flush()``
writes them in one transaction. Progress is flushed by the half-second tick, so a burst of
progress messages costs one commit, not thousands; anything a retained message will point at
(a new attempt) or that decides an outcome is flushed before the service acts on it. Commits
use ``synchronous=FULL``: once ``flush()`` returns, a power cut does not take it back (see
``flush(durable=False)`` for the one exception). WAL mode
lets ``tinyota status`` read the file while the server writes it.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from tinyota_mqtt.core import rollout as ro
from tinyota_mqtt.core.attempts import OPEN, Attempt
from tinyota_mqtt.errors import StateError

SCHEMA_VERSION = 3  # 2: attempt columns (see _ADDED); 3: rollouts
_SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY, online INTEGER, state TEXT, version TEXT,
    last_seen REAL, platform TEXT, free_space INTEGER, last_error TEXT, last_error_at REAL,
    commanded TEXT, held INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS attempts (
    id TEXT PRIMARY KEY, device TEXT NOT NULL, version TEXT NOT NULL, from_version TEXT,
    state TEXT NOT NULL, created REAL NOT NULL, deadline REAL NOT NULL, updated REAL NOT NULL,
    error TEXT, progress INTEGER, sha256 TEXT, download TEXT NOT NULL DEFAULT '',
    needs_download INTEGER NOT NULL DEFAULT 0, late INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS attempts_by_device ON attempts (device, created);
CREATE TABLE IF NOT EXISTS rollouts (
    id INTEGER PRIMARY KEY, image TEXT NOT NULL, version TEXT NOT NULL, state TEXT NOT NULL,
    created REAL NOT NULL, updated REAL NOT NULL, body TEXT NOT NULL
);
"""
# Columns added since schema 1, for files written by an older TinyOTA. (Schema 1's devices.progress,
# .announced and .announce_id stay in such files, unread: the open attempt holds those facts now.)
_ADDED = (
    ("devices", "last_error_at", "REAL"),
    ("attempts", "sha256", "TEXT"),
    ("attempts", "download", "TEXT NOT NULL DEFAULT ''"),
    ("attempts", "needs_download", "INTEGER NOT NULL DEFAULT 0"),
    ("attempts", "late", "INTEGER NOT NULL DEFAULT 0"),
)


@dataclass(frozen=True)
class DeviceRecord:
    id: str
    online: bool | None = None
    state: str | None = None
    version: str | None = None
    last_seen: float | None = None
    platform: str | None = None
    free_space: int | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    commanded: str | None = None  # version set on command; None: the group's policy decides
    held: bool = False  # cancelled on command: the policy announces nothing until the next install


_DEVICE_COLUMNS = [f.name for f in fields(DeviceRecord)]
_ATTEMPT_COLUMNS = [f.name for f in fields(Attempt)]


def _attempt(row: tuple[Any, ...]) -> Attempt:
    attempt = Attempt(*row)
    return replace(attempt, needs_download=bool(attempt.needs_download), late=bool(attempt.late))


class Registry:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._devices: dict[str, DeviceRecord] = {}
        self._attempts: dict[str, Attempt] = {}  # open attempts, plus any changed since the last flush
        # The ids in _attempts per device: open_attempt() runs for every status a device sends,
        # and scanning every attempt made each of N devices' reports cost O(N).
        self._by_device: dict[str, set[str]] = {}
        self._dirty_devices: set[str] = set()
        self._dirty_attempts: set[str] = set()
        # Every rollout, kept whole in memory (members included) and written in the same
        # transaction as the attempts it opened, so after a kill -9 the two agree.
        self._rollouts: dict[str, ro.Rollout] = {}
        self._dirty_rollouts: set[str] = set()
        self._db = self._open()
        self._durable = True  # the connection's synchronous setting (FULL), see flush()
        self._load()

    def _broken(self, why: str) -> StateError:
        return StateError(
            f"the state file {self.path} is unusable: {why}",
            f"stop the server, move it aside (mv {self.path} {self.path}.broken) and start again: "
            "devices re-report their versions within a minute, only the attempt history is lost",
        )

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self.path.stat().st_size == 0:
            # SQLite would take it as a new, empty database: every device's history gone unnoticed.
            raise self._broken("it is empty (0 bytes), so something truncated it")
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            integrity = db.execute("PRAGMA quick_check").fetchone()[0]
            if integrity != "ok":
                raise self._broken(f"integrity check says {integrity!r}")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise self._broken(f"it was written by a newer TinyOTA (schema {version})")
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: each commit is on disk when flush() returns. It costs one fsync per flush, and
            # flushes come at most every half second, or once per announcement batch.
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            for table, column, decl in _ADDED:
                have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                if column not in have:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise self._broken(str(exc)) from None
        return db

    def _load(self) -> None:
        try:
            for row in self._db.execute(f"SELECT {', '.join(_DEVICE_COLUMNS)} FROM devices"):
                record = DeviceRecord(*row)
                self._devices[record.id] = replace(
                    record, online=None if record.online is None else bool(record.online),
                    held=bool(record.held))
            placeholders = ", ".join("?" for _ in OPEN)
            for row in self._db.execute(
                    f"SELECT {', '.join(_ATTEMPT_COLUMNS)} FROM attempts WHERE state IN ({placeholders})",
                    OPEN):
                self._remember(_attempt(row))
            for (body,) in self._db.execute("SELECT body FROM rollouts ORDER BY id"):
                rollout = ro.from_json(json.loads(body))
                self._rollouts[rollout.id] = rollout
        except (sqlite3.DatabaseError, TypeError, ValueError, KeyError) as exc:
            raise self._broken(str(exc)) from None

    def close(self) -> None:
        self.flush()
        with contextlib.suppress(sqlite3.Error):
            self._db.close()

    # -- devices ---------------------------------------------------------------------------------

    def device(self, device_id: str) -> DeviceRecord:
        return self._devices.get(device_id) or DeviceRecord(device_id)

    def knows(self, device_id: str) -> bool:
        return device_id in self._devices

    def __len__(self) -> int:
        return len(self._devices)

    def devices(self) -> list[DeviceRecord]:
        return sorted(self._devices.values(), key=lambda d: d.id)

    def update_device(self, device_id: str, **changes: Any) -> DeviceRecord:
        record = self.device(device_id)
        if device_id in self._devices and all(getattr(record, k) == v for k, v in changes.items()):
            return record  # most updates change nothing (dataclasses.replace is the dear part)
        record = self._devices[device_id] = replace(record, **changes)  # new, or really changed
        self._dirty_devices.add(device_id)
        return record

    def forget_device(self, device_id: str) -> None:
        """Drop a device's record and its attempts, on disk at once (nothing to write behind)."""
        self._devices.pop(device_id, None)
        self._dirty_devices.discard(device_id)
        for attempt in self._in_memory(device_id):
            self._dirty_attempts.discard(attempt.id)
            self._forget(attempt)

        def delete() -> None:
            self._db.execute("DELETE FROM devices WHERE id = ?", (device_id,))
            self._db.execute("DELETE FROM attempts WHERE device = ?", (device_id,))

        self._in_transaction(delete)

    # -- attempts --------------------------------------------------------------------------------

    def _remember(self, attempt: Attempt) -> None:
        self._attempts[attempt.id] = attempt
        self._by_device.setdefault(attempt.device, set()).add(attempt.id)

    def _forget(self, attempt: Attempt) -> None:
        self._attempts.pop(attempt.id, None)
        ids = self._by_device.get(attempt.device)
        if ids is not None:
            ids.discard(attempt.id)
            if not ids:
                del self._by_device[attempt.device]

    def _in_memory(self, device_id: str) -> list[Attempt]:
        return [self._attempts[i] for i in self._by_device.get(device_id, ())]

    def put_attempt(self, attempt: Attempt) -> None:
        self._remember(attempt)
        self._dirty_attempts.add(attempt.id)

    def open_attempt(self, device_id: str) -> Attempt | None:
        found = [a for a in self._in_memory(device_id) if a.open]
        return max(found, key=lambda a: a.created) if found else None

    def open_attempts(self) -> list[Attempt]:
        return [a for a in self._attempts.values() if a.open]

    def attempt(self, attempt_id: str) -> Attempt | None:
        if attempt_id in self._attempts:
            return self._attempts[attempt_id]
        row = self._db.execute(
            f"SELECT {', '.join(_ATTEMPT_COLUMNS)} FROM attempts WHERE id = ?", (attempt_id,)).fetchone()
        return _attempt(row) if row else None

    def last_attempt(self, device_id: str) -> Attempt | None:
        """The newest attempt for a device, open or not, without forcing a flush."""
        candidates = self._in_memory(device_id)
        row = self._db.execute(
            f"SELECT {', '.join(_ATTEMPT_COLUMNS)} FROM attempts WHERE device = ? "
            "ORDER BY created DESC LIMIT 1", (device_id,)).fetchone()
        if row:
            candidates.append(_attempt(row))
        return max(candidates, key=lambda a: a.created) if candidates else None

    def history(self, device_id: str, limit: int = 50) -> list[Attempt]:
        """Newest first. Flushes first, so the query on disk sees every change made so far."""
        self.flush()
        rows = self._db.execute(
            f"SELECT {', '.join(_ATTEMPT_COLUMNS)} FROM attempts WHERE device = ? "
            "ORDER BY created DESC LIMIT ?", (device_id, limit))
        return [_attempt(row) for row in rows]

    def recent_attempts(self, device_id: str, limit: int) -> list[Attempt]:
        """The device's newest attempts, newest first, without forcing a flush."""
        by_id = {a.id: a for a in self._in_memory(device_id)}
        rows = self._db.execute(
            f"SELECT {', '.join(_ATTEMPT_COLUMNS)} FROM attempts WHERE device = ? "
            "ORDER BY created DESC LIMIT ?", (device_id, limit))
        for row in rows:
            by_id.setdefault(row[0], _attempt(row))
        return sorted(by_id.values(), key=lambda a: a.created, reverse=True)[:limit]

    # -- rollouts --------------------------------------------------------------------------------

    def rollouts(self) -> list[ro.Rollout]:
        """Oldest first."""
        return sorted(self._rollouts.values(), key=lambda r: int(r.id))

    def rollout(self, rollout_id: str) -> ro.Rollout | None:
        return self._rollouts.get(rollout_id)

    def next_rollout_id(self) -> str:
        return str(max((int(i) for i in self._rollouts), default=0) + 1)

    def put_rollout(self, rollout: ro.Rollout) -> None:
        if self._rollouts.get(rollout.id) != rollout:
            self._rollouts[rollout.id] = rollout
            self._dirty_rollouts.add(rollout.id)

    # -- persistence -----------------------------------------------------------------------------

    @property
    def dirty(self) -> bool:
        return bool(self._dirty_devices or self._dirty_attempts or self._dirty_rollouts)

    def flush(self, *, durable: bool = True) -> None:
        """Write what changed in one transaction.

        ``durable=False`` skips the fsync (``synchronous=NORMAL``): the commit survives the
        process being killed, not a power cut until the next durable flush. For facts written
        once per download on the event loop, where an fsync each would cost throughput.
        """
        if not self.dirty:
            return
        devices = [self._devices[d] for d in self._dirty_devices if d in self._devices]
        attempts = [self._attempts[a] for a in self._dirty_attempts]
        rollouts = [self._rollouts[r] for r in self._dirty_rollouts]
        self._in_transaction(lambda: self._write(devices, attempts, rollouts), durable=durable)
        self._dirty_devices.clear()
        self._dirty_attempts.clear()
        self._dirty_rollouts.clear()
        for attempt in attempts:  # closed attempts live on disk only
            if not attempt.open:
                self._forget(attempt)

    def _in_transaction(self, write: Callable[[], None], *, durable: bool = True) -> None:
        """Run ``write`` in one transaction. On any failure it is rolled back, so the next write
        can begin (a write that timed out on another process's lock leaves it open; a full disk
        makes SQLite roll it back itself, and the ROLLBACK finds nothing to do). A plain method
        taking a callable, not a context manager: mutmut leaves decorated functions unmutated."""
        try:
            if durable != self._durable:  # SQLite refuses to change it inside a transaction
                self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
                self._durable = durable
            self._db.execute("BEGIN")
            write()
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise StateError(f"cannot write the state file {self.path}: {exc}",
                             "check free disk space and permissions") from None

    def _write(self, devices: Iterable[DeviceRecord], attempts: Iterable[Attempt],
               rollouts: Iterable[ro.Rollout]) -> None:
        dev_sql = (f"INSERT OR REPLACE INTO devices ({', '.join(_DEVICE_COLUMNS)}) "
                   f"VALUES ({', '.join('?' for _ in _DEVICE_COLUMNS)})")
        att_sql = (f"INSERT OR REPLACE INTO attempts ({', '.join(_ATTEMPT_COLUMNS)}) "
                   f"VALUES ({', '.join('?' for _ in _ATTEMPT_COLUMNS)})")
        # Flat rows: getattr, not dataclasses.astuple, which deep-copies every value (a release to
        # a thousand devices flushes a thousand attempts at once).
        self._db.executemany(dev_sql, [tuple(getattr(d, c) for c in _DEVICE_COLUMNS) for d in devices])
        self._db.executemany(att_sql, [tuple(getattr(a, c) for c in _ATTEMPT_COLUMNS) for a in attempts])
        self._db.executemany(
            "INSERT OR REPLACE INTO rollouts (id, image, version, state, created, updated, body) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(int(r.id), r.image, r.version, r.state, r.created, r.updated,
              json.dumps(ro.to_json(r), separators=(",", ":"))) for r in rollouts])
