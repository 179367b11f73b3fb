"""Who is told when something changes: the dashboard's live stream subscribes here."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from tinyota_mqtt.core import attempts as att
from tinyota_mqtt.fleet.views import attempt_display
from tinyota_mqtt.registry import Registry

log = logging.getLogger("tinyota.service")

Listener = Callable[[dict[str, Any]], None]


class Events:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def watch(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def __len__(self) -> int:
        return len(self._listeners)

    def emit(self, event: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a broken watcher must not break ingestion
                log.exception("event listener failed")


class AttemptLog:
    """Stores attempt transitions, logs each outcome once, and tells the listeners."""

    def __init__(self, registry: Registry, events: Events) -> None:
        self.registry = registry
        self.events = events
        # Told when an attempt ends other than by cancelling: the announcer decides a retry.
        self.on_end: Callable[[att.Attempt], None] | None = None

    def put(self, attempt: att.Attempt, *, logged: bool = True) -> None:
        """Store a transition. ``logged=False``: the caller says it in a line of its own (a
        release superseding a thousand open attempts says so once, not a thousand times)."""
        self._record(attempt, self.registry.attempt(attempt.id), logged)

    def opened(self, attempt: att.Attempt) -> None:
        """A new attempt: its id is fresh, so there is nothing before it to look up (on disk)."""
        self._record(attempt, None, True)

    def _record(self, attempt: att.Attempt, before: att.Attempt | None, logged: bool) -> None:
        self.registry.put_attempt(attempt)
        if before is None or before.state != attempt.state:
            if attempt.state == att.SUCCEEDED:  # a fixed problem is not shown as current
                self.registry.update_device(attempt.device, last_error=None, last_error_at=None)
            if attempt.state in att.FINAL and logged:
                level = logging.INFO if attempt.state == att.SUCCEEDED else logging.WARNING
                log.log(level, "%s: update to %s %s%s%s", attempt.device, attempt.version,
                        attempt.state, " (confirmed late)" if attempt.late else "",
                        f" ({attempt.error})" if attempt.error else "")
            if len(self.events):  # asdict deep-copies: only for someone watching
                body = asdict(attempt)
                self.events.emit({"type": "attempt", "attempt": {**body, "show": attempt_display(body)}})
            if attempt.state in att.FINAL and attempt.state != att.CANCELLED and self.on_end is not None:
                self.on_end(attempt)
