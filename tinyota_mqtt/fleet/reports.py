"""What devices say (MQTT) and what the HTTP side saw → the registry → attempt transitions.

Nothing here trusts its input: every message is parsed by ``core/protocol.py`` first, a bad one
is logged once per device and problem, and changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from tinyota_mqtt.config.model import Config
from tinyota_mqtt.core import attempts as att
from tinyota_mqtt.core import protocol
from tinyota_mqtt.errors import NotFound, TinyOTAError
from tinyota_mqtt.fleet.events import AttemptLog
from tinyota_mqtt.registry import Registry
from tinyota_mqtt.store import Release

log = logging.getLogger("tinyota.service")

MAX_UNKNOWN_DEVICES = 1000  # devices the config does not name; bounds what a flood can add
_LOGGED_PROBLEMS_CAP = 10_000
# Warnings about bad messages, across all devices: a flood of distinct ids or problems must not
# become a flood of log lines. Past the budget they go to DEBUG and are counted.
_WARNINGS_PER_MINUTE = 20


class Reports:
    def __init__(self, config: Config, registry: Registry, attempts: AttemptLog, *,
                 clock: Callable[[], float], changed: Callable[[str], None],
                 version_changed: Callable[[str], None],
                 install: Callable[[str, str | None], object]) -> None:
        self.config = config
        self.registry = registry
        self.attempts = attempts
        self.topics = protocol.Topics(config.mqtt.prefix)
        self.clock = clock
        self.changed = changed
        self.version_changed = version_changed
        self.install = install
        self._logged: set[tuple[str, str]] = set()
        self._window = (0.0, 0, 0)  # (start, warnings logged, warnings suppressed) this minute

    def handle_device_message(self, topic: str, payload: bytes, retained: bool) -> None:
        parts = self.topics.split(topic)
        if parts is None:
            return
        device_id, kind = parts
        if device_id not in self.config.devices and not self.registry.knows(device_id) \
                and self._unknown_count() >= MAX_UNKNOWN_DEVICES:
            self.log_once(device_id, "too many unknown devices; ignoring this one")
            return
        try:
            if kind == "status":
                self.on_status(device_id, protocol.parse_status(payload), live=not retained)
            elif kind == "availability":
                self.on_availability(device_id, protocol.parse_availability(payload), live=not retained)
            elif kind == "install" and not retained:  # a stale retained command must not reinstall
                self.on_install_command(device_id, protocol.parse_install(payload))
        except protocol.ProtocolError as exc:
            self.log_once(device_id, f"ignored {kind} message: {exc}")
        except TinyOTAError as exc:
            # The hint says what to do instead; nobody sees it but in this line.
            hint = f" ({exc.hint})" if exc.hint else ""
            self.log_once(device_id, f"{kind} command refused: {exc.message}{hint}")

    def _unknown_count(self) -> int:
        known = sum(1 for device_id in self.config.devices if self.registry.knows(device_id))
        return len(self.registry) - known

    def log_once(self, device_id: str, problem: str) -> None:
        key = (device_id, problem)
        if key in self._logged:
            log.debug("%s: %s", device_id, problem)
            return
        if len(self._logged) >= _LOGGED_PROBLEMS_CAP:
            self._logged.clear()
        self._logged.add(key)
        now = self.clock()
        start, logged, suppressed = self._window
        if now - start >= 60:
            if suppressed:
                log.warning("%d more problem(s) with device messages in the last minute, not shown "
                            "(DEBUG logging shows them)", suppressed)
            start, logged, suppressed = now, 0, 0
        if logged < _WARNINGS_PER_MINUTE:
            log.warning("%s: %s", device_id, problem)
            self._window = (start, logged + 1, suppressed)
        else:
            log.debug("%s: %s", device_id, problem)
            self._window = (start, logged, suppressed + 1)

    def on_status(self, device_id: str, status: protocol.Status, *, live: bool) -> None:
        now = self.clock()
        changes: dict[str, Any] = {"state": status.state}
        if live:
            changes.update(last_seen=now, online=True)
        if status.version is not None:
            changes["version"] = status.version
        if status.platform is not None:
            changes["platform"] = status.platform
        if status.free_space is not None:
            changes["free_space"] = status.free_space
        if status.state == "failed":
            error = status.error or "device reported failure"
            # The HTTP side may have failed this attempt already and knows why (e.g. not enough
            # free space); the device then only says "Forbidden (403)". Keep both.
            ended = self.registry.attempt(status.id) if status.id else None
            if ended is not None and ended.state == att.FAILED and ended.error and ended.error != error:
                error = f"{error}: {ended.error}"
            changes.update(last_error=error, last_error_at=now)
        before = self.registry.device(device_id)
        self.registry.update_device(device_id, **changes)
        moved = status.version is not None and before.version != status.version
        attempt = self.registry.open_attempt(device_id)
        if attempt is None and moved:
            # Perhaps the confirmation of an attempt that timed out while the device was away.
            attempt = self.registry.last_attempt(device_id)
        if attempt is not None:
            self.attempts.put(att.on_status(attempt, status, now))
        if moved:
            self.version_changed(device_id)
        self.changed(device_id)

    def on_availability(self, device_id: str, online: bool, *, live: bool) -> None:
        if live:
            self.registry.update_device(device_id, online=online, last_seen=self.clock())
        else:
            self.registry.update_device(device_id, online=online)
        self.changed(device_id)

    def on_install_command(self, device_id: str, version: str | None) -> None:
        if device_id not in self.config.devices:
            raise NotFound(f"install command for unknown device {device_id}")
        if version is not None and not self.config.mqtt.version_commands:
            raise TinyOTAError(f"it names version {version}, and mqtt.version_commands is off",
                               "roll back with `tinyota install DEVICE --version V`, or set it in the config")
        self.install(device_id, version)

    def download_refused(self, device_id: str, release: Release, reason: str) -> None:
        now = self.clock()
        self.registry.update_device(device_id, last_error=reason, last_error_at=now, last_seen=now)
        attempt = self.registry.open_attempt(device_id)
        if attempt is not None and attempt.version == release.version:
            self.attempts.put(att.on_refused(attempt, reason, now))
        self.changed(device_id)

    def _attempt_for(self, device_id: str, release: Release) -> att.Attempt | None:
        attempt = self.registry.open_attempt(device_id)
        if attempt is None or attempt.version != release.version or attempt.sha256 not in (None, release.sha256):
            return None
        return attempt

    def download_started(self, device_id: str, release: Release) -> None:
        attempt = self._attempt_for(device_id, release)
        if attempt is not None:
            after = att.on_download_started(attempt, self.clock())
            if after != attempt:
                self.attempts.put(after)
                self.changed(device_id)

    def download_finished(self, device_id: str, release: Release) -> None:
        """The server sent this device the whole image (a 200 with every byte of it)."""
        attempt = self._attempt_for(device_id, release)
        if attempt is not None:
            self.attempts.put(att.on_served(attempt, self.clock(), self.registry.device(device_id).version))
            # A confirmation may hang on it: do not lose it to a crash. Without the fsync, though:
            # one per download on the event loop costs a fleet update its throughput.
            self.registry.flush(durable=False)
            self.changed(device_id)

    def check_deadlines(self, now: float) -> None:
        """``now`` comes from a clock that does not jump (see Service): a wall clock set forward
        by hours must not time out every attempt under way."""
        for attempt in self.registry.open_attempts():
            after = att.on_clock(attempt, now)
            if after != attempt:
                self.attempts.put(after)
                self.changed(attempt.device)
