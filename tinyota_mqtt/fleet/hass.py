"""Home Assistant publishing: one discovered ``update`` entity per device, its state and availability.

The shapes are pure functions in ``core/hass.py``; this decides when to send them and with what.
What a user sees in HA, and why, is in docs/homeassistant.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from tinyota_mqtt.config.model import Config
from tinyota_mqtt.core import attempts as att
from tinyota_mqtt.core import hass, protocol
from tinyota_mqtt.fleet.publisher import Publisher
from tinyota_mqtt.fleet.targets import Targets
from tinyota_mqtt.registry import Registry

ICON_PATH = "/icon.svg"  # served without a login (http/app.py): HA's frontend loads it as an <img>

# Runs a callable soon, after the work at hand (the runner passes the event loop's call_soon).
Defer = Callable[[Callable[[], None]], Any]


class HassPublisher:
    def __init__(self, config: Config, registry: Registry, targets: Targets, publisher: Publisher, *,
                 clock: Callable[[], float], defer: Defer | None = None) -> None:
        """``defer``: how ``changed`` puts its publishing off until the work at hand is done;
        None publishes at once."""
        self.config = config
        self.registry = registry
        self.targets = targets
        self.publisher = publisher
        self.clock = clock
        self.defer = defer
        self.topics = protocol.Topics(config.mqtt.prefix)
        self._removed: set[str] = set()  # removals are retained: once per device and process is enough
        self.base = config.server.public_url  # the config loader has taken any trailing "/" off
        self._changed: dict[str, None] = {}  # devices whose state waits for flush(), in order
        # The last state built per device and the payload it made: an unchanged state is not
        # serialised again only for the publisher to find the same bytes.
        self._built: dict[str, tuple[hass.EntityState, bytes]] = {}

    @property
    def enabled(self) -> bool:
        return self.config.homeassistant.enabled

    def publish_all(self) -> None:
        """Discovery and state for every device, sent even if unchanged (HA may have restarted)."""
        if not self.enabled:
            return
        prefix = self.config.homeassistant.discovery_prefix
        with self.targets.store.steady():
            for device_id in self.config.devices:
                self.publish_discovery(device_id, force=True)
                self.publish_state(device_id, force=True)
        for record in self.registry.devices():
            if record.id not in self.config.devices and record.id not in self._removed:
                # Removed from the config (or never in it): no entity for it in Home Assistant,
                # and none of its retained entity topics left behind. Not again on Home
                # Assistant's every restart: an empty retained message is gone from the broker,
                # there is nothing left to remove.
                self._removed.add(record.id)
                topic, payload, retain = hass.removal(prefix, record.id)
                self.publisher.publish(topic, payload, retain=retain)
                for topic in (self.topics.state(record.id), hass.availability_topic(self.topics, record.id)):
                    self.publisher.publish(topic, b"", retain=True)

    def publish_discovery(self, device_id: str, *, force: bool = False) -> None:
        device = self.config.devices.get(device_id)
        if not self.enabled or device is None:
            return
        image = self.config.image_of(device_id)
        record = self.registry.device(device_id)
        entity = hass.EntityInfo(
            device_id, device.display_name, image.name if image else None,
            record.platform or (image.platform if image else None), record.version,
            configuration_url=f"{self.base}/devices/{quote(device_id)}",
            entity_picture=self.base + ICON_PATH)
        topic, payload, retain = hass.discovery(self.config.homeassistant.discovery_prefix, self.topics, entity)
        self.publisher.publish(topic, payload, retain=retain, force=force)

    def changed(self, device_id: str) -> None:
        """The device's state may have changed: publish it once the work at hand is done.

        A burst of reports (the MQTT link hands them over in batches) or a release to a group
        then costs one state per device, built from the last word, instead of one per message;
        an outcome is still published within the same turn of the event loop.
        """
        if not self.enabled or device_id not in self.config.devices:
            return
        if self.defer is None:
            self.publish_state(device_id)
            return
        if not self._changed:
            self.defer(self.flush)
        self._changed[device_id] = None

    def flush(self) -> None:
        """Publish the state of every device ``changed`` since the last flush."""
        waiting, self._changed = self._changed, {}
        with self.targets.store.steady():
            for device_id in waiting:
                self.publish_state(device_id)

    def publish_state(self, device_id: str, *, force: bool = False) -> None:
        """The entity's state and availability, as the registry says now."""
        if not self.enabled or device_id not in self.config.devices:
            return
        record = self.registry.device(device_id)
        image = self.config.image_of(device_id)
        offered = self.targets.offered(device_id)
        attempt = self.registry.open_attempt(device_id)
        # "In progress" from the first byte downloaded, not from the announcement: a device that
        # is offline for a week should not show a spinner for a week.
        busy = attempt is not None and attempt.state in (att.DOWNLOADING, att.FLASHING)
        # The attempt's progress: 100 from the moment the device flashes and reboots, so HA's bar
        # ends full before the new installed version replaces it.
        percentage = attempt.progress if attempt is not None else None
        if offered is not None:
            release_url = f"{self.base}/releases#release-{quote(offered.image)}-{quote(offered.version)}"
        else:
            release_url = f"{self.base}/releases" + (f"#image-{quote(image.name)}" if image else "")
        entity = hass.EntityState(
            installed=record.version, offered=offered.version if offered else None,
            in_progress=busy, percentage=percentage,
            title=(image.description or image.name) if image else "Firmware",
            notes=offered.notes if offered else "", release_url=release_url)
        built = self._built.get(device_id)
        topic = self.topics.state(device_id)
        if force or built is None or built[0] != entity or self.publisher.sent(topic) != built[1]:
            topic, payload, retain = hass.state(self.topics, device_id, entity)
            self._built[device_id] = (entity, payload)
            self.publisher.publish(topic, payload, retain=retain, force=force)
        self.publish_availability(device_id, force=force)

    def publish_availability(self, device_id: str, *, force: bool = False) -> None:
        if not self.enabled or device_id not in self.config.devices:
            return
        record = self.registry.device(device_id)
        attempt = self.registry.open_attempt(device_id)
        available = hass.entity_available(
            online=record.online, offline_since=record.last_seen if record.online is False else None,
            updating=attempt is not None and attempt.state in (att.DOWNLOADING, att.FLASHING),
            attempt_deadline=attempt.deadline if attempt is not None else None, now=self.clock())
        topic, payload, retain = hass.availability(self.topics, device_id, available)
        self.publisher.publish(topic, payload, retain=retain, force=force)

    def tick(self) -> None:
        """A reboot's grace runs out with time, not with a message: look again at open updates."""
        if not self.enabled:
            return
        for attempt in self.registry.open_attempts():
            # Only a device that is offline mid-update can change with time (its reboot grace).
            if self.registry.device(attempt.device).online is False:
                self.publish_availability(attempt.device)
