"""The device view that the API, the dashboard and `tinyota status` show: one shape for all.

``device_view`` is a pure function of the config, the record, the attempts and the target, so
the CLI reading the files without a server (``snapshot.py``) builds the very same view.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from tinyota_mqtt.config.model import Config
from tinyota_mqtt.core.attempts import Attempt
from tinyota_mqtt.fleet.targets import Targets
from tinyota_mqtt.registry import DeviceRecord, Registry


def pin(config: Config, record: DeviceRecord) -> str | None:
    """The version the device is held at, by command or by its group's pin, if any."""
    group = config.group_of(record.id)
    return record.commanded or (group.version if group else None)


def device_view(config: Config, record: DeviceRecord, current: Attempt | None, newest: Attempt | None,
                target: str | None) -> dict[str, Any]:
    """``current``: the open attempt, if any; ``newest``: that, or else the last one that ended."""
    device = config.devices.get(record.id)
    image = config.image_of(record.id)
    return {
        "id": record.id,
        "name": device.display_name if device else record.id,
        "known": device is not None,
        "group": device.group if device else None,
        "image": image.name if image else None,
        "online": record.online,
        "state": record.state,
        "installed": record.version,
        "target": target,
        "announced": current.version if current else None,
        "progress": current.progress if current else None,
        "last_seen": record.last_seen,
        "platform": record.platform or (image.platform if image else None),
        "free_space": record.free_space,
        "last_error": record.last_error,
        "last_error_at": record.last_error_at,
        "pinned": pin(config, record),
        "held": record.held,
        "attempt": asdict(newest) if newest else None,
    }


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
        current = self.registry.open_attempt(device_id)
        newest = current or self.registry.last_attempt(device_id)
        return device_view(self.config, self.registry.device(device_id), current, newest,
                           self.targets.version(device_id))
