"""One driver per device kind (docs/devices.md). A new kind is one module here, plus its name in
``config/model.py``'s KINDS and its options in ``config/loader.py``."""

from __future__ import annotations

from collections.abc import Mapping

from tinyota_mqtt.config.model import Config
from tinyota_mqtt.drivers.base import Driver
from tinyota_mqtt.drivers.tasmota import TasmotaDriver
from tinyota_mqtt.drivers.tinyota import TinyotaDriver

__all__ = ["Driver", "Drivers", "TasmotaDriver", "TinyotaDriver"]


class Drivers:
    """The driver of each kind, and the one that speaks for each device."""

    def __init__(self, config: Config, tinyota: TinyotaDriver, tasmota: TasmotaDriver) -> None:
        self.config = config
        self.tinyota = tinyota
        self.tasmota = tasmota
        # The ESPHome snippet speaks the tinyota protocol (docs/esphome.md), so it shares its driver.
        self.by_kind: Mapping[str, Driver] = {"tinyota": tinyota, "esphome": tinyota, "tasmota": tasmota}

    def of(self, device_id: str) -> Driver:
        device = self.config.devices.get(device_id)
        return self.by_kind[device.kind if device is not None else "tinyota"]

    def kind_of(self, device_id: str) -> str | None:
        """The configured kind, or what discovery says of a device the config does not name."""
        device = self.config.devices.get(device_id)
        if device is not None:
            return device.kind
        return "tasmota" if self.tasmota.discovered_as(device_id) is not None else None

    def adoption(self, device_id: str) -> str | None:
        """For a Tasmota device only discovery knows: the config.yaml lines that would manage it.
        Shown, never written: adopting a device is the user's edit of their own file."""
        if device_id in self.config.devices:
            return None
        found = self.tasmota.discovered_as(device_id)
        return None if found is None else "devices:\n" + found.snippet(next(
            (name for name, group in self.config.groups.items() if group.kind == "tasmota"), "GROUP"))

    def subscriptions(self) -> list[str]:
        found: list[str] = []
        for driver in (self.tinyota, self.tasmota):
            found += [s for s in driver.subscriptions() if s not in found]
        return found

    def handle(self, topic: str, payload: bytes, retained: bool) -> bool:
        return self.tinyota.handle(topic, payload, retained) or self.tasmota.handle(topic, payload, retained)
