"""The service: the small façade that the HTTP and MQTT layers call.

It wires the fleet's parts (``tinyota_mqtt/fleet/``), each with one job: targets, announcing,
reports, Home Assistant, views, events. It knows no sockets: the HTTP layer calls it, the MQTT
adapter feeds it messages and hands it a ``Bus`` to publish on. Everything runs on one event loop
thread, so nothing here takes locks (``authenticate`` excepted, see there).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from tinyota_mqtt.config.model import Config
from tinyota_mqtt.core import attempts as att
from tinyota_mqtt.core import protocol
from tinyota_mqtt.core.httpauth import parse_basic
from tinyota_mqtt.core.passwords import Password, Verifier
from tinyota_mqtt.drivers import Drivers, TasmotaDriver, TinyotaDriver
from tinyota_mqtt.drivers.tasmota import Download
from tinyota_mqtt.errors import StateError
from tinyota_mqtt.fleet.announcer import Announcer
from tinyota_mqtt.fleet.events import AttemptLog, Events, Listener
from tinyota_mqtt.fleet.guard import RetainedGuard
from tinyota_mqtt.fleet.hass import Defer, HassPublisher
from tinyota_mqtt.fleet.publisher import Bus, NullBus, Publisher
from tinyota_mqtt.fleet.reports import Reports
from tinyota_mqtt.fleet.rollouts import Rollouts
from tinyota_mqtt.fleet.targets import Targets
from tinyota_mqtt.fleet.tokens import TokenStore
from tinyota_mqtt.fleet.views import Views
from tinyota_mqtt.registry import Registry
from tinyota_mqtt.signing import Signer
from tinyota_mqtt.store import FirmwareStore, Release

__all__ = ["Bus", "Listener", "NullBus", "Principal", "Service"]

log = logging.getLogger("tinyota.service")

SYNC_WAIT_SECONDS = 10.0  # how long to wait for the broker's retained state before judging anyway
FORGET_UNKNOWN_AFTER = 7 * 24 * 3600.0  # an unknown device silent this long is dropped from the list


def steady_clock() -> Callable[[], float]:
    """Wall-clock time at start, advanced by the monotonic clock: a clock set forward or back
    while the server runs does not move it, so it cannot time out every attempt at once. Times
    it records stay comparable across restarts, which re-read the wall clock."""
    wall, mono = time.time(), time.monotonic()
    return lambda: wall + (time.monotonic() - mono)


class Link(Bus, Protocol):
    """The MQTT session the service publishes on: the one source of whether the server is connected.

    ``up``: the broker accepted the session and it has not ended. ``session`` counts accepted
    sessions, so that "the broker's retained state is in" is known to hold for this session and
    not for one that ended a moment ago (the link runs on its own thread; its callbacks reach the
    service later, in order).
    """

    @property
    def up(self) -> bool: ...

    @property
    def session(self) -> int: ...


@dataclass(frozen=True)
class _SyncWait:
    """Waiting for the broker to echo ``token``, our marker, in ``session`` (connected at ``since``)."""

    token: str
    session: int | None
    since: float


@dataclass(frozen=True)
class Principal:
    username: str
    admin: bool


class Service:
    def __init__(self, config: Config, *, store: FirmwareStore | None = None,
                 registry: Registry | None = None, clock: Callable[[], float] | None = None,
                 defer: Defer | None = None) -> None:
        """``defer`` runs a callable after the work at hand (the runner: the loop's call_soon);
        Home Assistant states are then published once per device and turn. None: at once."""
        self.config = config
        self.store = store or FirmwareStore(config.server.store,
                                            max_size=config.server.limits.max_upload_bytes)
        self.registry = registry or Registry(config.server.state)
        self.topics = protocol.Topics(config.mqtt.prefix)
        # Times recorded and deadlines judged on a clock that does not jump (see steady_clock).
        self.clock = clock or steady_clock()
        clock = self.clock
        accounts: dict[str, Password] = {d.id: d.password for d in config.devices.values() if d.password}
        accounts[config.server.admin.username] = config.server.admin.password
        self._verifier = Verifier(accounts)
        self._store_seen: tuple[tuple[str, int], ...] | None = None
        self._link: Link | None = None  # None: running without MQTT
        # Until the broker has delivered its retained state (the devices' last reports) in the
        # current session, nothing is judged: no deadline, no announcement that the retained
        # state might make wrong. The session it was delivered in, and the wait for the next:
        self._synced_session: int | None = None
        self._waiting: _SyncWait | None = None
        self._ever_synced = False
        self._state_problem: str | None = None  # the state file cannot be written: say so once
        self._next_expiry = 0.0
        self.signer = Signer.load(config.server.signing_key) if config.server.signing_key is not None else None

        self.events = Events()
        self.publisher = Publisher()
        attempts = AttemptLog(self.registry, self.events)
        self.targets = Targets(config, self.store, self.registry)
        self.hass = HassPublisher(config, self.registry, self.targets, self.publisher, clock=clock, defer=defer)
        self.reports = Reports(config, self.registry, attempts, clock=clock, changed=self._device_changed,
                               version_changed=self._version_changed,
                               install=self._install_command)
        self.tokens = TokenStore(clock=clock)
        self.drivers = Drivers(
            config, TinyotaDriver(config, self.publisher, self.reports, self.signer),
            TasmotaDriver(config, self.publisher, self.reports, self.registry, self.store, self.tokens))
        self.views = Views(config, self.registry, self.targets, kind_of=self.drivers.kind_of,
                           adopt_of=self.drivers.adoption)
        self.announcer = Announcer(config, self.store, self.registry, self.targets, self.publisher,
                                   attempts, clock=clock, changed=self._device_changed, drivers=self.drivers)
        attempts.on_end = self._attempt_ended
        self.guard = RetainedGuard(self.publisher, clock=clock, expected=self._expected_retained)
        self.rollouts = Rollouts(config, self.store, self.registry, self.announcer, self.publisher, self.events,
                                 clock=clock)

    @property
    def bus(self) -> Bus:
        return self.publisher.bus

    @bus.setter
    def bus(self, bus: Bus) -> None:
        self.publisher.bus = bus

    @property
    def mqtt_connected(self) -> bool | None:
        """Whether the MQTT session is up, as the link says (None: running without MQTT)."""
        return None if self._link is None else self._link.up

    @property
    def _synced(self) -> bool:
        """Judging is allowed: without MQTT always; with it, once this session's retained state is in."""
        link = self._link
        return link is None or (link.up and link.session == self._synced_session)

    @property
    def ready(self) -> bool:
        """Connected, and the broker's retained state (the devices' last reports) is in."""
        return bool(self.mqtt_connected) and self._synced and self._waiting is None

    def attach(self, link: Link) -> None:
        """Publish through ``link`` (the MQTT session), and wait for its retained state before judging."""
        self.publisher.bus = link
        self._link = link

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
        return Principal(user, user == self.config.server.admin.username)

    # -- policy and commands ---------------------------------------------------------------------

    def target_version(self, device_id: str) -> str | None:
        return self.targets.version(device_id)

    def target_release(self, device_id: str) -> Release | None:
        return self.targets.release(device_id)

    def subscriptions(self) -> list[str]:
        """Every topic filter the MQTT link subscribes to for the devices (Home Assistant's aside)."""
        return self.topics.subscriptions() + self.drivers.subscriptions()

    def token_download(self, device_id: str, token: str, variant: str) -> Download:
        """What a Tasmota device's token URL may fetch (``drivers/tasmota.py``)."""
        return self.drivers.tasmota.download(device_id, token, variant)

    def token_spent(self, token: str, variant: str) -> None:
        self.tokens.spend(token, variant)

    def reconcile(self) -> list[att.Attempt]:
        return self.announcer.reconcile()

    def install(self, device_ids: Iterable[str], version: str | None = None) -> list[att.Attempt]:
        return self.announcer.install(device_ids, version)

    def _install_command(self, device_id: str, version: str | None) -> None:
        """A message on the device's install topic: Home Assistant's Install button, or anyone's."""
        if version is None:
            version = self.targets.install_command_version(device_id)
        self.announcer.install([device_id], version)

    def install_group(self, group: str, version: str | None = None) -> list[att.Attempt]:
        return self.announcer.install_group(group, version)

    def cancel(self, device_ids: Iterable[str]) -> list[str]:
        return self.announcer.cancel(device_ids)

    # -- what devices say, and what the HTTP side saw --------------------------------------------

    def handle_message(self, topic: str, payload: bytes, retained: bool = False) -> None:
        """Entry point for every MQTT message we subscribed to. Never raises on bad input.

        ``retained`` marks a message the broker kept from earlier: it tells what a device last
        said, not that the device is here now.
        """
        if topic == self.config.homeassistant.status_topic:
            if payload.strip() == b"online":
                self.hass.publish_all()  # HA restarted and lost non-retained knowledge
            return
        if topic == self.topics.server_sync:
            if self._waiting is not None and payload == self._waiting.token.encode():
                self._on_synced(self._waiting)
            return
        parts = self.topics.split(topic)
        if topic == self.topics.server_availability or (parts and parts[1] in ("update", "state", "entity")) \
                or topic.startswith(self.config.homeassistant.discovery_prefix + "/"):
            self.guard.saw(topic, payload)
            return
        self.drivers.handle(topic, payload, retained)  # each kind's driver hands its facts to Reports

    def _expected_retained(self, topic: str) -> bytes | None:
        """What a retained topic the server owns should hold; None for topics it does not own."""
        if topic == self.topics.server_availability:
            return b"online" if self.mqtt_connected else None
        parts = self.topics.split(topic)
        if parts is not None:
            device_id, kind = parts
            if device_id not in self.config.devices:
                return None
            if kind == "update":
                return self.publisher.sent(topic) or b""  # ours even when we never sent one
        # The rest the guard is handed (a device's Home Assistant state and availability, and
        # discovery configs) is ours once we sent it; without Home Assistant we send none.
        return self.publisher.sent(topic)

    def _attempt_ended(self, attempt: att.Attempt) -> None:
        if self._synced:
            self.announcer.reconcile([attempt.device])  # schedules a retry where one is due

    def _version_changed(self, device_id: str) -> None:
        self.hass.publish_discovery(device_id)  # sw_version in the device block
        if self._synced:
            self.announcer.reconcile([device_id])  # e.g. back on the old version: tell it again

    def download_refused(self, device_id: str, release: Release, reason: str) -> None:
        self.reports.download_refused(device_id, release, reason)

    def download_started(self, device_id: str, release: Release) -> None:
        self.reports.download_started(device_id, release)

    def download_finished(self, device_id: str, release: Release) -> None:
        self.reports.download_finished(device_id, release)

    # -- time and the link -----------------------------------------------------------------------

    def tick(self) -> None:
        """Called every half second by the runner: deadlines, retries, new releases, write-behind."""
        waiting = self._waiting
        if waiting is not None and self.clock() - waiting.since >= SYNC_WAIT_SECONDS:
            log.warning("the broker did not echo our sync marker within %d s (may the server read "
                        "%s?); judging without it", SYNC_WAIT_SECONDS, self.topics.server_sync)
            self._on_synced(waiting)
        try:
            self._tick()
        except StateError as exc:
            if self._state_problem != exc.message:
                self._state_problem = exc.message
                log.error("%s", exc)
                self.events.emit({"type": "health", **self.health()})
            return
        if self._state_problem is not None:
            log.info("the state file is writable again")
            self._state_problem = None
            self.events.emit({"type": "health", **self.health()})

    def _tick(self) -> None:
        if self._synced:
            self.reports.check_deadlines(self.clock())
            self.announcer.retry_due()
        self.guard.restore()
        self.hass.tick()
        seen = self.store.fingerprint()
        if seen != self._store_seen:
            first = self._store_seen is None
            self._store_seen = seen
            if not first:
                self.events.emit({"type": "releases"})
            if self._synced:
                self.announcer.reconcile()  # announces new releases, re-announces replaced ones
                self.rollouts.on_releases(startup=first)
            # Offline (and at start, before the link is up) there is no one to tell; the connect
            # publishes every state anyway. 1,000 devices: half a second less to start.
            if self.mqtt_connected:
                for device_id in self.config.devices:
                    self.hass.changed(device_id)  # after the announcements above
        if self._synced:
            self.rollouts.tick()
        if self.clock() >= self._next_expiry:
            self._next_expiry = self.clock() + 60
            self._forget_silent_unknowns()
        self.registry.flush()
        self.publisher.release()  # announcements that waited for a commit that had failed

    def _forget_silent_unknowns(self) -> None:
        cutoff = self.clock() - FORGET_UNKNOWN_AFTER
        for record in self.registry.devices():
            if record.id not in self.config.devices and record.last_seen is not None \
                    and record.last_seen < cutoff:
                self.registry.forget_device(record.id)

    def on_disconnected(self) -> None:
        """The session ended (or a connection attempt failed). While the broker is away devices
        cannot report; ``_synced`` is already false (the link is down), and stays so after the
        reconnect until that session's retained state is in, as at start."""
        self.events.emit({"type": "health", **self.health()})

    def on_connected(self) -> None:
        """The broker (re)connected: make every retained message we own right again.

        The subscriptions went out just before; the broker delivers their retained messages
        ahead of anything published after them, so when our sync marker comes back, the
        devices' last reports are in (see ``_on_synced``).
        """
        self.events.emit({"type": "health", **self.health()})
        # First, so that the tick's fallback still ends the wait if a publish below fails.
        waiting = _SyncWait(secrets.token_hex(8), self._link.session if self._link is not None else None,
                            self.clock())
        self._waiting = waiting
        self.publisher.forget_sent()
        self.announcer.republish()
        self.hass.publish_all()
        self.rollouts.publish_all()
        self.publisher.publish(self.topics.server_sync, waiting.token.encode(), retain=False)

    def _on_synced(self, waiting: _SyncWait) -> None:
        first = not self._ever_synced
        self._ever_synced = True
        self._synced_session = waiting.session
        self._waiting = None
        log.debug("retained state received; judging deadlines and targets")
        try:
            # At every sync: a release added while the server was down, or while the broker was
            # away (the tick that saw it could not judge, and will not see it again).
            self.rollouts.on_releases(startup=first)
            self.announcer.reconcile()
        except StateError as exc:  # the tick reports it as a condition; a message handler never raises
            log.error("%s", exc)

    # -- views and events ------------------------------------------------------------------------

    def device_ids(self) -> list[str]:
        return self.views.device_ids()

    def device_view(self, device_id: str) -> dict[str, Any]:
        return self.views.device(device_id)

    def watch(self, listener: Listener) -> Callable[[], None]:
        return self.events.watch(listener)

    def _device_changed(self, device_id: str) -> None:
        self.hass.changed(device_id)
        if len(self.events):
            self.events.emit({"type": "device", "device": self.views.device(device_id)})

    def health(self) -> dict[str, Any]:
        mqtt = {None: "off", True: "connected", False: "disconnected"}[self.mqtt_connected]
        problem = {"problem": self._state_problem} if self._state_problem else {}
        return {"status": "degraded" if self._state_problem else "ok", **problem,
                "mqtt": mqtt, "devices": len(self.config.devices),
                "releases": len(self.store.releases()),
                # Public by nature: devices need it to check announcements.
                "signing_public_key": self.signer.public_key if self.signer else None}

    def close(self) -> None:
        self.registry.close()
