"""The service: one object that holds the config, the store and the registry, and decides.

It is the only place where the flow meets: releases in the store, the policy's targets, the
announcements sent, what devices report, and the attempts that record how each update ended.
It knows no sockets: the HTTP layer calls it, the MQTT adapter feeds it messages and hands it a
``Bus`` to publish on. Everything runs on one event loop thread, so it takes no locks.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from tinyota_mqtt.config.model import Config
from tinyota_mqtt.core import attempts as att
from tinyota_mqtt.core import hass, policy, protocol
from tinyota_mqtt.core.httpauth import parse_basic
from tinyota_mqtt.core.passwords import Password, Verifier
from tinyota_mqtt.errors import NotFound, TinyOTAError
from tinyota_mqtt.registry import DeviceRecord, Registry
from tinyota_mqtt.signing import Signer
from tinyota_mqtt.store import FirmwareStore, Release

log = logging.getLogger("tinyota.service")

MAX_UNKNOWN_DEVICES = 1000  # devices the config does not name; bounds what a flood can add
_LOGGED_PROBLEMS_CAP = 10_000


class Bus(Protocol):
    """Where the service publishes. The MQTT adapter is one; tests may record instead."""

    def publish(self, topic: str, payload: bytes, *, retain: bool, qos: int = 1) -> None: ...


class NullBus:
    def publish(self, topic: str, payload: bytes, *, retain: bool, qos: int = 1) -> None:
        pass


@dataclass(frozen=True)
class Principal:
    username: str
    admin: bool


Listener = Callable[[dict[str, Any]], None]


class Service:
    def __init__(self, config: Config, *, store: FirmwareStore | None = None,
                 registry: Registry | None = None, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.store = store or FirmwareStore(config.server.store,
                                            max_size=config.server.limits.max_upload_bytes)
        self.registry = registry or Registry(config.server.state)
        self.topics = protocol.Topics(config.mqtt.prefix)
        self.clock = clock
        self.bus: Bus = NullBus()
        accounts: dict[str, Password] = {d.id: d.password for d in config.devices.values() if d.password}
        accounts[config.server.admin.username] = config.server.admin.password
        self._verifier = Verifier(accounts)
        self._listeners: list[Listener] = []
        self._sent: dict[str, bytes] = {}  # last retained payload per topic: publish changes only
        self._logged: set[tuple[str, str]] = set()
        self._release_stamp: tuple[tuple[str, str], ...] | None = None
        self.mqtt_connected: bool | None = None  # None: running without MQTT
        self.signer: Signer | None = None
        if config.server.signing_key is not None:
            self.signer = Signer.load(config.server.signing_key)

    # -- who is asking ---------------------------------------------------------------------------

    def authentication_is_cheap(self, authorization: str | None) -> bool:
        """False when checking these credentials means running the password KDF (~0.2 s of CPU).

        The HTTP layer then runs authenticate() in a worker thread (hashlib releases the GIL),
        so a fleet's first logins after a restart do not stall every other download.
        """
        creds = parse_basic(authorization)
        return creds is None or self._verifier.is_cheap(*creds)

    def authenticate(self, authorization: str | None) -> Principal | None:
        """Thread-safe: it reads the frozen config and the verifier, which locks its cache."""
        creds = parse_basic(authorization)
        if creds is None or not self._verifier.check(*creds):
            return None
        user = creds[0]
        admin = user == self.config.server.admin.username
        return Principal(user, admin)

    # -- policy ----------------------------------------------------------------------------------

    def target_version(self, device_id: str) -> str | None:
        image = self.config.image_of(device_id)
        record = self.registry.device(device_id)
        if image is None or record.held:
            return None
        return policy.target_version(self.config, device_id, self.store.releases(image.name),
                                     record.commanded)

    def target_release(self, device_id: str) -> Release | None:
        image = self.config.image_of(device_id)
        version = self.target_version(device_id)
        if image is None or version is None:
            return None
        return self.store.get(image.name, version)

    # -- announcing ------------------------------------------------------------------------------

    def reconcile(self) -> list[att.Attempt]:
        """Announce to every device whose target differs from what was announced to it."""
        started = []
        for device_id in self.config.devices:
            record = self.registry.device(device_id)
            release = self.target_release(device_id)
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
                self._put_attempt(att.cancel(attempt, now))
            self.registry.update_device(device_id, announced=None, announce_id=None, held=True,
                                        commanded=None)
            self._publish(self.topics.update(device_id), b"", retain=True)  # empty clears it
            if record.announced or attempt:
                cancelled.append(device_id)
            self._device_changed(device_id)
        return cancelled

    def _announce(self, device_id: str, release: Release) -> att.Attempt:
        now = self.clock()
        previous = self.registry.open_attempt(device_id)
        if previous is not None:
            self._put_attempt(att.cancel(previous, now))
        group = self.config.group_of(device_id)
        timeout = group.attempt_timeout if group else 600.0
        record = self.registry.device(device_id)
        attempt = att.Attempt(id=secrets.token_hex(6), device=device_id, version=release.version,
                              from_version=record.version, state=att.PENDING, created=now,
                              deadline=now + timeout, updated=now)
        self._put_attempt(attempt)
        self.registry.update_device(device_id, announced=release.version, announce_id=attempt.id,
                                    last_error=None)
        self._publish_announcement(device_id, release, attempt.id)
        log.info("announced %s %s to %s (attempt %s)", release.image, release.version, device_id, attempt.id)
        self._device_changed(device_id)
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
        self._publish(self.topics.update(device_id), payload, retain=True)

    # -- what devices say ------------------------------------------------------------------------

    def handle_message(self, topic: str, payload: bytes, retained: bool = False) -> None:
        """Entry point for every MQTT message we subscribed to. Never raises on bad input.

        ``retained`` marks a message the broker kept from earlier: it tells what a device last
        said, not that the device is here now.
        """
        if topic == self.config.homeassistant.status_topic:
            if payload.strip() == b"online":
                self.publish_discovery()  # HA restarted and lost non-retained knowledge
            return
        parts = self.topics.split(topic)
        if parts is None:
            return
        device_id, kind = parts
        if device_id not in self.config.devices and not self.registry.knows(device_id) \
                and len(self.registry) - len(self.config.devices) >= MAX_UNKNOWN_DEVICES:
            self._log_once(device_id, "too many unknown devices; ignoring this one")
            return
        try:
            if kind == "status":
                self.on_status(device_id, protocol.parse_status(payload), live=not retained)
            elif kind == "availability":
                self.on_availability(device_id, protocol.parse_availability(payload), live=not retained)
            elif kind == "install" and not retained:  # a stale retained command must not reinstall
                self.on_install_command(device_id, protocol.parse_install(payload))
        except protocol.ProtocolError as exc:
            self._log_once(device_id, f"ignored {kind} message: {exc}")
        except TinyOTAError as exc:
            self._log_once(device_id, f"{kind} command refused: {exc.message}")

    def _log_once(self, device_id: str, problem: str) -> None:
        key = (device_id, problem)
        if key in self._logged:
            log.debug("%s: %s", device_id, problem)
            return
        if len(self._logged) >= _LOGGED_PROBLEMS_CAP:
            self._logged.clear()
        self._logged.add(key)
        log.warning("%s: %s", device_id, problem)

    def on_status(self, device_id: str, status: protocol.Status, *, live: bool = True) -> None:
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
        changes["progress"] = status.progress if status.state in ("downloading", "flashing") else None
        if status.state == "failed":
            error = status.error or "device reported failure"
            # The HTTP side may have failed this attempt already and knows why (e.g. not enough
            # free space); the device then only says "Forbidden (403)". Keep both.
            ended = self.registry.attempt(status.id) if status.id else None
            if ended is not None and ended.state == att.FAILED and ended.error and ended.error != error:
                error = f"{error}: {ended.error}"
            changes["last_error"] = error
        before = self.registry.device(device_id)
        self.registry.update_device(device_id, **changes)
        attempt = self.registry.open_attempt(device_id)
        if attempt is not None:
            self._put_attempt(att.on_status(attempt, status, now))
        if before.version != status.version and status.version is not None:
            self._publish_discovery_for(device_id)  # sw_version in the device block
        self._device_changed(device_id)

    def on_availability(self, device_id: str, online: bool, *, live: bool = True) -> None:
        if live:
            self.registry.update_device(device_id, online=online, last_seen=self.clock())
        else:
            self.registry.update_device(device_id, online=online)
        self._device_changed(device_id)

    def on_install_command(self, device_id: str, version: str | None) -> None:
        if device_id not in self.config.devices:
            raise NotFound(f"install command for unknown device {device_id}")
        self.install([device_id], version)

    # -- what the HTTP side saw ------------------------------------------------------------------

    def download_refused(self, device_id: str, release: Release, reason: str) -> None:
        now = self.clock()
        self.registry.update_device(device_id, last_error=reason, last_seen=now)
        attempt = self.registry.open_attempt(device_id)
        if attempt is not None and attempt.version == release.version:
            self._put_attempt(att.on_refused(attempt, reason, now))
        self._device_changed(device_id)

    def download_started(self, device_id: str, release: Release) -> None:
        attempt = self.registry.open_attempt(device_id)
        if attempt is not None and attempt.version == release.version and attempt.state == att.PENDING:
            started = protocol.Status("downloading", progress=0, id=attempt.id)
            self._put_attempt(att.on_status(attempt, started, self.clock()))
            self._device_changed(device_id)

    # -- time ------------------------------------------------------------------------------------

    def tick(self) -> None:
        """Called about once a second: deadlines, new releases in the store, write-behind."""
        now = self.clock()
        for attempt in self.registry.open_attempts():
            after = att.on_clock(attempt, now)
            if after != attempt:
                self._put_attempt(after)
                self._device_changed(attempt.device)
        stamp = tuple((r.image, r.sha256 + r.version) for r in self.store.releases())
        if stamp != self._release_stamp:
            first = self._release_stamp is None
            self._release_stamp = stamp
            if not first:
                self._emit({"type": "releases"})
            self.reconcile()
            for device_id in self.config.devices:
                self._publish_state(device_id)
        self.registry.flush()

    def set_mqtt_connected(self, connected: bool) -> None:
        if self.mqtt_connected != connected:
            self.mqtt_connected = connected
            self._emit({"type": "health", **self.health()})

    def on_connected(self) -> None:
        """The broker (re)connected: make every retained message we own right again."""
        self.set_mqtt_connected(True)
        self._sent.clear()
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
        self.publish_discovery()
        self.reconcile()

    # -- Home Assistant --------------------------------------------------------------------------

    def publish_discovery(self) -> None:
        ha = self.config.homeassistant
        if not ha.enabled:
            return
        for device_id in self.config.devices:
            self._publish_discovery_for(device_id, force=True)
            self._publish_state(device_id, force=True)
        for record in self.registry.devices():
            if record.id not in self.config.devices:
                # Removed from the config (or never in it): no entity for it in Home Assistant.
                topic, payload, retain = hass.removal(ha.discovery_prefix, record.id)
                self._publish(topic, payload, retain=retain)

    def _publish_discovery_for(self, device_id: str, *, force: bool = False) -> None:
        ha = self.config.homeassistant
        device = self.config.devices.get(device_id)
        if not ha.enabled or device is None:
            return
        image = self.config.image_of(device_id)
        record = self.registry.device(device_id)
        entity = hass.EntityInfo(device_id, device.display_name, image.name if image else None,
                                 record.platform or (image.platform if image else None), record.version)
        topic, payload, retain = hass.discovery(ha.discovery_prefix, self.topics, entity)
        self._publish(topic, payload, retain=retain, force=force)

    def _publish_state(self, device_id: str, *, force: bool = False) -> None:
        if not self.config.homeassistant.enabled or device_id not in self.config.devices:
            return
        record = self.registry.device(device_id)
        image = self.config.image_of(device_id)
        release = self.target_release(device_id)
        attempt = self.registry.open_attempt(device_id)
        # "In progress" from the first byte downloaded, not from the announcement: a device that
        # is offline for a week should not show a spinner for a week.
        busy = attempt is not None and attempt.state in (att.DOWNLOADING, att.FLASHING)
        topic, payload, retain = hass.state(
            self.topics, device_id, installed=record.version,
            latest=release.version if release else None,
            in_progress=busy, percentage=record.progress,
            title=f"{image.name} firmware" if image else "firmware",
            summary=release.notes if release else "",
            release_url=f"{self.config.server.public_url}/devices/{device_id}",
        )
        self._publish(topic, payload, retain=retain, force=force)

    # -- views and events ------------------------------------------------------------------------

    def device_ids(self) -> list[str]:
        """Configured devices first (in config order), then unknown ones that reported."""
        known = list(self.config.devices)
        return known + [r.id for r in self.registry.devices() if r.id not in self.config.devices]

    def device_view(self, device_id: str) -> dict[str, Any]:
        device = self.config.devices.get(device_id)
        record: DeviceRecord = self.registry.device(device_id)
        image = self.config.image_of(device_id)
        attempt = self.registry.open_attempt(device_id) or self.registry.last_attempt(device_id)
        return {
            "id": device_id,
            "name": device.display_name if device else device_id,
            "known": device is not None,
            "group": device.group if device else None,
            "image": image.name if image else None,
            "online": record.online,
            "state": record.state,
            "installed": record.version,
            "target": self.target_version(device_id),
            "announced": record.announced,
            "progress": record.progress,
            "last_seen": record.last_seen,
            "platform": record.platform or (image.platform if image else None),
            "free_space": record.free_space,
            "last_error": record.last_error,
            "held": record.held,
            "attempt": asdict(attempt) if attempt else None,
        }

    def watch(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _emit(self, event: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a broken watcher must not break ingestion
                log.exception("event listener failed")

    def _put_attempt(self, attempt: att.Attempt) -> None:
        before = self.registry.attempt(attempt.id)
        self.registry.put_attempt(attempt)
        if before is None or before.state != attempt.state:
            if attempt.state in att.FINAL:
                level = logging.INFO if attempt.state == att.SUCCEEDED else logging.WARNING
                log.log(level, "%s: update to %s %s%s", attempt.device, attempt.version,
                        attempt.state, f" ({attempt.error})" if attempt.error else "")
            self._emit({"type": "attempt", "attempt": asdict(attempt)})

    def _device_changed(self, device_id: str) -> None:
        self._publish_state(device_id)
        if self._listeners:
            self._emit({"type": "device", "device": self.device_view(device_id)})

    def _publish(self, topic: str, payload: bytes, *, retain: bool, force: bool = False) -> None:
        if retain and not force and self._sent.get(topic) == payload:
            return
        if retain:
            self._sent[topic] = payload
        self.bus.publish(topic, payload, retain=retain, qos=1)

    def health(self) -> dict[str, Any]:
        mqtt = {None: "off", True: "connected", False: "disconnected"}[self.mqtt_connected]
        return {"status": "ok", "mqtt": mqtt, "devices": len(self.config.devices),
                "releases": len(self.store.releases()),
                # Public by nature: devices need it to check announcements.
                "signing_public_key": self.signer.public_key if self.signer else None}

    def close(self) -> None:
        self.registry.close()
