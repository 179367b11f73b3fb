"""The device view that the API, the dashboard and `tinyota status` show: one shape for all."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from tinyota_mqtt.config.model import Config
from tinyota_mqtt.fleet.targets import Targets
from tinyota_mqtt.registry import DeviceRecord, Registry


class Views:
    def __init__(self, config: Config, registry: Registry, targets: Targets) -> None:
        self.config = config
        self.registry = registry
        self.targets = targets

    def device_ids(self) -> list[str]:
        """Configured devices first (in config order), then unknown ones that reported."""
        known = list(self.config.devices)
        return known + [r.id for r in self.registry.devices() if r.id not in self.config.devices]

    def device(self, device_id: str) -> dict[str, Any]:
        device = self.config.devices.get(device_id)
        record: DeviceRecord = self.registry.device(device_id)
        image = self.config.image_of(device_id)
        current = self.registry.open_attempt(device_id)
        attempt = current or self.registry.last_attempt(device_id)
        return {
            "id": device_id,
            "name": device.display_name if device else device_id,
            "known": device is not None,
            "group": device.group if device else None,
            "image": image.name if image else None,
            "online": record.online,
            "state": record.state,
            "installed": record.version,
            "target": self.targets.version(device_id),
            "announced": current.version if current else None,
            "progress": current.progress if current else None,
            "last_seen": record.last_seen,
            "platform": record.platform or (image.platform if image else None),
            "free_space": record.free_space,
            "last_error": record.last_error,
            "last_error_at": record.last_error_at,
            "pinned": self._pin(device_id),
            "held": record.held,
            "attempt": asdict(attempt) if attempt else None,
        }

    def _pin(self, device_id: str) -> str | None:
        """The version the device is held at, by command or by its group's pin, if any."""
        group = self.config.group_of(device_id)
        return self.registry.device(device_id).commanded or (group.version if group else None)
