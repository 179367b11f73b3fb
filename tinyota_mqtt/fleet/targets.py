"""Which release each device should run now: the pure policy applied to the store and registry."""

from __future__ import annotations

from tinyota_mqtt.config.model import Config
from tinyota_mqtt.core import policy
from tinyota_mqtt.registry import Registry
from tinyota_mqtt.store import FirmwareStore, Release


class Targets:
    def __init__(self, config: Config, store: FirmwareStore, registry: Registry) -> None:
        self.config = config
        self.store = store
        self.registry = registry

    def version(self, device_id: str) -> str | None:
        image = self.config.image_of(device_id)
        record = self.registry.device(device_id)
        if image is None or record.held:
            return None
        return policy.target_version(self.config, device_id, self.store.releases(image.name),
                                     record.commanded)

    def release(self, device_id: str) -> Release | None:
        image = self.config.image_of(device_id)
        version = self.version(device_id)
        if image is None or version is None:
            return None
        return self.store.get(image.name, version)
