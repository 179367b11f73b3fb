"""The files as they are, read-only: what the CLI shows when no server answers.

Nothing here writes. The state file is opened with SQLite's ``mode=ro``, no signing key is
loaded and no ``Service`` is built, so a user who may only read the files can look at them,
and a server started later finds them as they were. While a server runs the CLI asks it
instead (its registry writes behind, so the file can lag what the server knows).
"""

from __future__ import annotations

import sqlite3
from dataclasses import fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tinyota_mqtt.config.model import Config
from tinyota_mqtt.core import policy
from tinyota_mqtt.core.attempts import OPEN, Attempt
from tinyota_mqtt.errors import NotFound, StateError
from tinyota_mqtt.fleet.views import device_view
from tinyota_mqtt.registry import DeviceRecord
from tinyota_mqtt.registry import _attempt as attempt_from_row  # the server's own decoding
from tinyota_mqtt.store import FirmwareStore, Release

_DEVICE_COLUMNS = ", ".join(f.name for f in fields(DeviceRecord))
_ATTEMPT_COLUMNS = ", ".join(f.name for f in fields(Attempt))


def open_readonly(path: Path) -> sqlite3.Connection:
    """The state file for reading only; never created, never changed."""
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    if not path.with_name(path.name + "-wal").exists():
        # No write-ahead log: no server has the file open (SQLite removes the log when the last
        # connection closes), so the file alone is the whole state. "immutable" reads it as it
        # is, without the -shm file WAL mode would otherwise create beside it.
        uri += "&immutable=1"
    try:
        db = sqlite3.connect(uri, uri=True)
        db.execute("SELECT 1 FROM devices LIMIT 1").fetchall()
    except sqlite3.Error as exc:
        raise _unreadable(path, str(exc)) from None
    return db


def _unreadable(path: Path, why: str) -> StateError:
    return StateError(f"cannot read the state file {path}: {why}",
                      "run as a user who may read it, or ask the running server (--server URL)")


class Snapshot:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.state = config.server.state
        self.store = FirmwareStore(config.server.store)
        self.records: dict[str, DeviceRecord] = {}
        self._db: sqlite3.Connection | None = None
        if self.state.exists():
            self._db = open_readonly(self.state)
            try:
                for row in self._db.execute(f"SELECT {_DEVICE_COLUMNS} FROM devices"):
                    record = DeviceRecord(*row)
                    self.records[record.id] = replace(
                        record, online=None if record.online is None else bool(record.online),
                        held=bool(record.held))
            except (sqlite3.Error, TypeError) as exc:
                raise _unreadable(self.state, str(exc)) from None

    @property
    def has_state(self) -> bool:
        return self._db is not None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()

    def device_ids(self) -> list[str]:
        known = list(self.config.devices)
        return known + sorted(d for d in self.records if d not in self.config.devices)

    def _attempts(self, where: str, args: tuple[Any, ...], limit: int) -> list[Attempt]:
        if self._db is None:
            return []
        try:
            rows = self._db.execute(f"SELECT {_ATTEMPT_COLUMNS} FROM attempts WHERE {where} "
                                    "ORDER BY created DESC LIMIT ?", (*args, limit)).fetchall()
        except sqlite3.Error as exc:
            raise _unreadable(self.state, str(exc)) from None
        return [attempt_from_row(row) for row in rows]

    def _open_attempt(self, device_id: str) -> Attempt | None:
        marks = ", ".join("?" for _ in OPEN)
        found = self._attempts(f"device = ? AND state IN ({marks})", (device_id, *OPEN), 1)
        return found[0] if found else None

    def _last_attempt(self, device_id: str) -> Attempt | None:
        found = self._attempts("device = ?", (device_id,), 1)
        return found[0] if found else None

    def _target(self, record: DeviceRecord) -> str | None:
        image = self.config.image_of(record.id)
        if image is None or record.held:
            return None
        return policy.target_version(self.config, record.id, self.store.releases(image.name), record.commanded)

    def device_view(self, device_id: str) -> dict[str, Any]:
        record = self.records.get(device_id) or DeviceRecord(device_id)
        current = self._open_attempt(device_id)
        return device_view(self.config, record, current, current or self._last_attempt(device_id),
                           self._target(record))

    def devices(self) -> list[dict[str, Any]]:
        return [self.device_view(d) for d in self.device_ids()]

    def history(self, device_id: str, limit: int) -> list[Attempt]:
        if device_id not in self.config.devices and device_id not in self.records:
            raise NotFound(f"no device {device_id!r}: it is not in the config and never reported",
                           "`tinyota status` lists the devices")
        return self._attempts("device = ?", (device_id,), limit)

    def releases(self, image: str | None) -> list[Release]:
        return self.store.releases(image)
