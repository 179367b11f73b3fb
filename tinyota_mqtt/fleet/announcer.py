"""Targets → retained announcements: what each device is told to run, and what is withdrawn.

Each announcement opens an attempt with a fresh id; the device never retries an id it failed
on, so the server decides every further try (``core/retry.py``). How a device is told is its
kind's driver's business (``drivers/``): an esp_client device by its retained
``<prefix>/<device>/update`` message, a Tasmota device by commands. Either way the attempt is
committed before anything is published (the publisher's outbox): a crash never leaves an
announcement on the broker whose attempt the server does not know.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from tinyota_mqtt.config.model import Config, Group
from tinyota_mqtt.core import attempts as att
from tinyota_mqtt.core import retry
from tinyota_mqtt.errors import NotFound, StateError, TinyOTAError
from tinyota_mqtt.fleet.events import AttemptLog
from tinyota_mqtt.fleet.publisher import Publisher
from tinyota_mqtt.fleet.targets import Targets
from tinyota_mqtt.registry import Registry
from tinyota_mqtt.store import FirmwareStore, Release

if TYPE_CHECKING:
    from tinyota_mqtt.drivers import Drivers

log = logging.getLogger("tinyota.service")

FEW = 3  # announcements in one commit logged a line each; more make one line per release


class Announcer:
    def __init__(self, config: Config, store: FirmwareStore, registry: Registry, targets: Targets,
                 publisher: Publisher, attempts: AttemptLog, *, clock: Callable[[], float],
                 changed: Callable[[str], None], drivers: Drivers) -> None:
        self.config = config
        self.store = store
        self.registry = registry
        self.targets = targets
        self.publisher = publisher
        self.attempts = attempts
        self.clock = clock
        self.changed = changed
        self.drivers = drivers
        self._due: dict[str, float] = {}  # retries waiting for their back-off, by device
        # Announced since the last commit, for its log lines: (release, attempt, what it superseded).
        self._told: list[tuple[Release, att.Attempt, att.Attempt | None]] = []

    # -- deciding --------------------------------------------------------------------------------

    def reconcile(self, device_ids: Iterable[str] | None = None) -> list[att.Attempt]:
        """Bring each device's announcement in line with its target: announce, retry or withdraw.

        Runs when the store changes, at (re)connect, when a device reports another version, and
        when a retry's back-off ends.
        """
        now = self.clock()
        started = []
        with self.store.steady():
            for device_id in self.config.devices if device_ids is None else device_ids:
                if device_id in self.config.devices:
                    attempt = self._reconcile_one(device_id, now)
                    if attempt is not None:
                        started.append(attempt)
        self._commit()
        return started

    def retry_due(self) -> None:
        """Called by the tick: reconcile the devices whose back-off has ended."""
        now = self.clock()
        due = [d for d, at in self._due.items() if at <= now]
        if due:
            self.reconcile(due)

    def _reconcile_one(self, device_id: str, now: float) -> att.Attempt | None:
        self._due.pop(device_id, None)
        release = self.targets.release(device_id)
        current = self.registry.open_attempt(device_id)
        if release is None:
            if current is not None:
                self._withdraw(device_id, current, now, f"withdrawn: {current.version} is no longer its target")
            return None
        # An attempt from a schema-1 state file has no sha256: it is about this release all the same.
        if current is not None and current.version == release.version and current.sha256 in (None, release.sha256):
            return None  # under way
        group = self.config.group_of(device_id)
        if group is None:  # never so: only a device in a group has a target (Targets.release)
            return None
        policy = retry.RetryPolicy(group.retries, group.retry_backoff)
        recent = [current] if current else self.registry.recent_attempts(device_id, policy.retries + 1)
        decision = retry.decide((release.version, release.sha256), self.registry.device(device_id).version,
                                recent, policy, now)
        if decision.at is None:
            if current is not None:  # its target moved to what the device already runs
                self._withdraw(device_id, current, now, f"withdrawn: the device runs {release.version}")
            elif decision.reason.startswith("gave up"):
                log.warning("%s: not announcing %s again: %s", device_id, release.version, decision.reason)
            return None
        if decision.at > now:
            self._due[device_id] = decision.at
            return None
        return self._announce(device_id, group, release, now, recent)

    # -- commands --------------------------------------------------------------------------------

    def install(self, device_ids: Iterable[str], version: str | None = None) -> list[att.Attempt]:
        """Announce ``version`` (default: the image's latest) to each device, now."""
        plan: list[tuple[str, Group, Release, str | None]] = []
        for device_id in device_ids:
            device = self.config.devices.get(device_id)
            if device is None:
                raise NotFound(f"no device {device_id!r} in {self.config.source or 'the config'}",
                               "`tinyota status` lists the configured devices")
            group = self.config.group_of(device_id)
            if group is None:
                raise TinyOTAError(f"device {device_id} is in no group, so it has no image to install",
                                   "give it a group in the config")
            release = self.store.get(group.image, version) if version else self.store.latest(group.image)
            if release is None:
                raise NotFound(f"image {group.image} has no releases yet",
                               f"tinyota release FILE --image {group.image} --version X.Y.Z")
            # Without a version an automatic group's device goes back to following its group, unless
            # the group rolls out in waves: its policy targets nothing before the device's wave, so
            # the version is set on command and the device gets it now.
            follows_group = version is None and group.auto_update and group.version is None \
                and group.rollout is None
            plan.append((device_id, group, release, None if follows_group else release.version))
        now = self.clock()
        started = []
        for device_id, group, release, commanded in plan:
            record = self.registry.update_device(device_id, commanded=commanded, held=False)
            if release.version == record.version:
                log.info("%s already runs %s; nothing to install", device_id, release.version)
                current = self.registry.open_attempt(device_id)
                if current is not None:
                    self._withdraw(device_id, current, now, f"withdrawn: the device runs {release.version}")
                continue
            started.append(self._announce(device_id, group, release, now))
        self._commit()
        return started

    def install_group(self, group: str, version: str | None = None) -> list[att.Attempt]:
        if group not in self.config.groups:
            raise NotFound(f"no group {group!r}", "groups: " + ", ".join(self.config.groups))
        return self.install([d.id for d in self.config.members(group)], version)

    def cancel(self, device_ids: Iterable[str]) -> list[str]:
        """Withdraw pending announcements and hold the devices until the next install."""
        ids = list(device_ids)
        for device_id in ids:
            if device_id not in self.config.devices:
                raise NotFound(f"no device {device_id!r}")
        cancelled = []
        now = self.clock()
        for device_id in ids:
            self.registry.update_device(device_id, held=True, commanded=None)
            self._due.pop(device_id, None)
            current = self.registry.open_attempt(device_id)
            if current is not None:
                cancelled.append(device_id)
            self._withdraw(device_id, current, now, "cancelled")
        self._commit()
        return cancelled

    # -- publishing ------------------------------------------------------------------------------

    def republish(self) -> None:
        """After a (re)connect: every open attempt's announcement again, with its own id.

        Only committed ones: an attempt the state file could not take yet waits in the outbox.
        """
        try:
            self.registry.flush()
        except StateError:
            return  # the tick reports the condition and releases the outbox once a flush succeeds
        for attempt in self.registry.open_attempts():
            image = self.config.image_of(attempt.device)
            try:
                release = self.store.get(image.name, attempt.version) if image else None
            except NotFound:
                continue  # reconcile() withdraws it
            if release is not None and attempt.sha256 in (None, release.sha256):
                self.drivers.of(attempt.device).republish(attempt, release)

    def _announce(self, device_id: str, group: Group, release: Release, now: float,
                  newest: list[att.Attempt] | None = None) -> att.Attempt:
        """``newest``: the device's newest attempts, newest first, if the caller has looked them up."""
        previous = self.registry.open_attempt(device_id)
        if previous is not None:
            why = "superseded: its release was replaced" if previous.version == release.version \
                else f"superseded by {release.version}"
            self.attempts.put(att.cancel(previous, now, why), logged=False)  # said with the announcement
        # A retry of the same bytes after the device already took them whole (it timed out while
        # rebooting, say): the device will not download again, and need not. The newest attempt
        # is the open one if there is one (a device has one at most, opened last).
        if previous is not None:
            newest = [previous]
        elif newest is None:
            newest = self.registry.recent_attempts(device_id, 1)
        last = newest[0] if newest else None
        served = att.SERVED if last is not None and last.version == release.version \
            and last.sha256 == release.sha256 and last.download == att.SERVED else att.NOT_SERVED
        attempt = att.Attempt(
            id=secrets.token_hex(6), device=device_id, version=release.version,
            from_version=self.registry.device(device_id).version, state=att.PENDING, created=now,
            deadline=now + group.attempt_timeout, updated=now, sha256=release.sha256,
            needs_download=group.confirm == "download+report", download=served)
        self.attempts.opened(attempt)
        self.registry.update_device(device_id, last_error=None, last_error_at=None)
        self.drivers.of(device_id).tell(device_id, release, attempt)
        self._told.append((release, attempt, previous))
        self.changed(device_id)
        return attempt

    def _withdraw(self, device_id: str, attempt: att.Attempt | None, now: float, why: str) -> None:
        if attempt is not None:
            self.attempts.put(att.cancel(attempt, now, why))
        self.drivers.of(device_id).withdraw(device_id, attempt)
        self.changed(device_id)

    def _commit(self) -> None:
        """Attempts to disk first, then their announcements (see fleet/publisher.py)."""
        try:
            self.registry.flush()
            self.publisher.release()
        finally:
            told, self._told = self._told, []
            _say(told)


def _say(told: list[tuple[Release, att.Attempt, att.Attempt | None]]) -> None:
    """The log lines for what a commit announced: a line per device for a few, a line per
    release for a group (a release to a thousand devices wrote two thousand lines, a tenth of
    the time it took: bench fan-out). Each device's attempts are in its history either way."""
    by_release: dict[tuple[str, str], list[tuple[att.Attempt, att.Attempt | None]]] = {}
    for release, attempt, previous in told:
        by_release.setdefault((release.image, release.version), []).append((attempt, previous))
    for (image, version), announced in by_release.items():
        if len(announced) <= FEW or log.isEnabledFor(logging.DEBUG):
            for attempt, previous in announced:
                log.info("announced %s %s to %s (attempt %s%s)", image, version, attempt.device, attempt.id,
                         f"; superseding {previous.id}, {previous.version}" if previous else "")
            continue
        superseded = sum(1 for _a, previous in announced if previous is not None)
        names = ", ".join(a.device for a, _p in announced[:FEW])
        log.info("announced %s %s to %d devices (%s, …)%s", image, version, len(announced), names,
                 f"; superseding {superseded} open attempts" if superseded else "")
