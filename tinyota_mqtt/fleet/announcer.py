"""Targets → retained announcements: what each device is told to run, and what is withdrawn.

A device learns of an update only from its retained ``<prefix>/<device>/update`` message. Each
announcement opens an attempt with a fresh id; the device never retries an id it failed on.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
from collections.abc import Callable, Iterable

from tinyota_mqtt.config.model import Config
from tinyota_mqtt.core import attempts as att
from tinyota_mqtt.core import protocol
from tinyota_mqtt.errors import NotFound, TinyOTAError
from tinyota_mqtt.fleet.events import AttemptLog
from tinyota_mqtt.fleet.publisher import Publisher
from tinyota_mqtt.fleet.targets import Targets
from tinyota_mqtt.registry import Registry
from tinyota_mqtt.signing import Signer
from tinyota_mqtt.store import FirmwareStore, Release

log = logging.getLogger("tinyota.service")

DEFAULT_ATTEMPT_TIMEOUT = 600.0  # seconds; a device in no group still gets a deadline


class Announcer:
    def __init__(self, config: Config, store: FirmwareStore, registry: Registry, targets: Targets,
                 publisher: Publisher, attempts: AttemptLog, *, clock: Callable[[], float],
                 changed: Callable[[str], None], signer: Signer | None) -> None:
        self.config = config
        self.store = store
        self.registry = registry
        self.targets = targets
        self.publisher = publisher
        self.attempts = attempts
        self.topics = protocol.Topics(config.mqtt.prefix)
        self.clock = clock
        self.changed = changed
        self.signer = signer

    def reconcile(self) -> list[att.Attempt]:
        """Announce to every device whose target differs from what was announced to it."""
        started = []
        for device_id in self.config.devices:
            record = self.registry.device(device_id)
            release = self.targets.release(device_id)
            if release is None or release.version == record.announced:
                continue
            if release.version == record.version:
                continue  # already runs it; nothing to tell
            started.append(self._announce(device_id, release))
        return started

    def install(self, device_ids: Iterable[str], version: str | None = None) -> list[att.Attempt]:
        """Announce ``version`` (default: the image's latest) to each device, now."""
        plan: list[tuple[str, Release, str | None]] = []
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
            follows_group = version is None and group.auto_update and group.version is None
            plan.append((device_id, release, None if follows_group else release.version))
        started = []
        for device_id, release, commanded in plan:
            record = self.registry.update_device(device_id, commanded=commanded, held=False)
            if release.version == record.version:
                log.info("%s already runs %s; nothing to install", device_id, release.version)
                continue
            started.append(self._announce(device_id, release))
        return started

    def install_group(self, group: str, version: str | None = None) -> list[att.Attempt]:
        if group not in self.config.groups:
            raise NotFound(f"no group {group!r}", "groups: " + ", ".join(self.config.groups))
        return self.install([d.id for d in self.config.members(group)], version)

    def cancel(self, device_ids: Iterable[str]) -> list[str]:
        """Withdraw pending announcements and hold the devices until the next install."""
        cancelled = []
        now = self.clock()
        for device_id in device_ids:
            if device_id not in self.config.devices:
                raise NotFound(f"no device {device_id!r}")
            record = self.registry.device(device_id)
            attempt = self.registry.open_attempt(device_id)
            if attempt is not None:
                self.attempts.put(att.cancel(attempt, now))
            self.registry.update_device(device_id, announced=None, announce_id=None, held=True,
                                        commanded=None)
            self.publisher.publish(self.topics.update(device_id), b"", retain=True)  # empty clears it
            if record.announced or attempt:
                cancelled.append(device_id)
            self.changed(device_id)
        return cancelled

    def republish(self) -> None:
        """After a (re)connect: every open attempt's announcement again, with its own id."""
        for device_id in self.config.devices:
            record = self.registry.device(device_id)
            attempt = self.registry.open_attempt(device_id)
            if record.announced and record.announce_id:
                image = self.config.image_of(device_id)
                try:
                    release = self.store.get(image.name, record.announced) if image else None
                except NotFound:
                    release = None
                if release is not None and attempt is not None:
                    self._publish_announcement(device_id, release, record.announce_id)

    def _announce(self, device_id: str, release: Release) -> att.Attempt:
        now = self.clock()
        previous = self.registry.open_attempt(device_id)
        if previous is not None:
            self.attempts.put(att.cancel(previous, now))
        group = self.config.group_of(device_id)
        timeout = group.attempt_timeout if group else DEFAULT_ATTEMPT_TIMEOUT
        record = self.registry.device(device_id)
        attempt = att.Attempt(id=secrets.token_hex(6), device=device_id, version=release.version,
                              from_version=record.version, state=att.PENDING, created=now,
                              deadline=now + timeout, updated=now)
        self.attempts.put(attempt)
        self.registry.update_device(device_id, announced=release.version, announce_id=attempt.id,
                                    last_error=None)
        self._publish_announcement(device_id, release, attempt.id)
        log.info("announced %s %s to %s (attempt %s)", release.image, release.version, device_id, attempt.id)
        self.changed(device_id)
        return attempt

    def _announcement(self, release: Release, attempt_id: str) -> protocol.Announcement:
        ann = protocol.Announcement(
            id=attempt_id, version=release.version,
            url=protocol.firmware_url(self.config.server.public_url, release.image, release.version),
            size=release.size, md5=release.md5, sha256=release.sha256)
        if self.signer is not None:
            ann = dataclasses.replace(ann, sig=self.signer.sign(ann.manifest()))
        return ann

    def _publish_announcement(self, device_id: str, release: Release, attempt_id: str) -> None:
        payload = self._announcement(release, attempt_id).payload()
        self.publisher.publish(self.topics.update(device_id), payload, retain=True)
