"""Home Assistant publishing: one discovered ``update`` entity per device, and its state.

The shapes are pure functions in ``core/hass.py``; this decides when to send them and with what.
"""

from __future__ import annotations

from tinyota_mqtt.config.model import Config
from tinyota_mqtt.core import attempts as att
from tinyota_mqtt.core import hass, protocol
from tinyota_mqtt.fleet.publisher import Publisher
from tinyota_mqtt.fleet.targets import Targets
from tinyota_mqtt.registry import Registry


class HassPublisher:
    def __init__(self, config: Config, registry: Registry, targets: Targets, publisher: Publisher) -> None:
        self.config = config
        self.registry = registry
        self.targets = targets
        self.publisher = publisher
        self.topics = protocol.Topics(config.mqtt.prefix)
        self._removed: set[str] = set()  # removals are retained: once per device and process is enough

    @property
    def enabled(self) -> bool:
        return self.config.homeassistant.enabled

    def publish_all(self) -> None:
        """Discovery and state for every device, sent even if unchanged (HA may have restarted)."""
        if not self.enabled:
            return
        prefix = self.config.homeassistant.discovery_prefix
        for device_id in self.config.devices:
            self.publish_discovery(device_id, force=True)
            self.publish_state(device_id, force=True)
        for record in self.registry.devices():
            if record.id not in self.config.devices and record.id not in self._removed:
                # Removed from the config (or never in it): no entity for it in Home Assistant.
                # Not again on Home Assistant's every restart: an empty retained config is gone
                # from the broker, there is nothing left to remove.
                self._removed.add(record.id)
                topic, payload, retain = hass.removal(prefix, record.id)
                self.publisher.publish(topic, payload, retain=retain)

    def publish_discovery(self, device_id: str, *, force: bool = False) -> None:
        device = self.config.devices.get(device_id)
        if not self.enabled or device is None:
            return
        image = self.config.image_of(device_id)
        record = self.registry.device(device_id)
        entity = hass.EntityInfo(device_id, device.display_name, image.name if image else None,
                                 record.platform or (image.platform if image else None), record.version)
        topic, payload, retain = hass.discovery(self.config.homeassistant.discovery_prefix, self.topics, entity)
        self.publisher.publish(topic, payload, retain=retain, force=force)

    def publish_state(self, device_id: str, *, force: bool = False) -> None:
        if not self.enabled or device_id not in self.config.devices:
            return
        record = self.registry.device(device_id)
        image = self.config.image_of(device_id)
        release = self.targets.release(device_id)
        attempt = self.registry.open_attempt(device_id)
        # "In progress" from the first byte downloaded, not from the announcement: a device that
        # is offline for a week should not show a spinner for a week.
        busy = attempt is not None and attempt.state in (att.DOWNLOADING, att.FLASHING)
        topic, payload, retain = hass.state(
            self.topics, device_id, installed=record.version,
            latest=release.version if release else None,
            in_progress=busy, percentage=attempt.progress if attempt is not None else None,
            title=f"{image.name} firmware" if image else "firmware",
            summary=release.notes if release else "",
            release_url=f"{self.config.server.public_url}/devices/{device_id}",
        )
        self.publisher.publish(topic, payload, retain=retain, force=force)
