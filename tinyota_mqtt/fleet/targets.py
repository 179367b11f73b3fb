"""Which release each device should run now: the pure policy applied to the store and registry."""

from __future__ import annotations

from tinyota_mqtt.config.model import Config
from tinyota_mqtt.core import policy
from tinyota_mqtt.errors import TinyOTAError
from tinyota_mqtt.registry import Registry
from tinyota_mqtt.store import FirmwareStore, Release


class Targets:
    def __init__(self, config: Config, store: FirmwareStore, registry: Registry) -> None:
        self.config = config
        self.store = store
        self.registry = registry

    def version(self, device_id: str) -> str | None:
        release = self.release(device_id)
        return release.version if release is not None else None

    def release(self, device_id: str) -> Release | None:
        image = self.config.image_of(device_id)
        record = self.registry.device(device_id)
        if image is None or record.held:
            return None
        # One listing per question: the policy picks from it, and the pick is taken from it too
        # (rather than asking the store again), so both see the same store.
        releases = self.store.releases(image.name)
        return _pick(releases, policy.target_version(self.config, device_id, releases, record.commanded))

    def offered(self, device_id: str) -> Release | None:
        """What the device may run now (``policy.offered_version``): HA's latest_version."""
        image = self.config.image_of(device_id)
        if image is None:
            return None
        record = self.registry.device(device_id)
        releases = self.store.releases(image.name)
        return _pick(releases, policy.offered_version(self.config, device_id, releases, record.commanded,
                                                      record.version))

    def install_command_version(self, device_id: str) -> str | None:
        """The version a bare ``install`` command (Home Assistant's button) installs.

        HA's button cannot name a version, so it means "what you showed me": the offered
        release. None when that is the newest release of a device's automatic, unpinned group
        without a rollout: ``install`` then hands the device back to its group, as ``tinyota
        install DEVICE`` does. (With a rollout the group's policy targets nothing until the
        device's wave, so the version is set on command: the device gets it now.)
        """
        group = self.config.group_of(device_id)
        offered = self.offered(device_id)
        if group is None or offered is None:
            raise TinyOTAError(f"{device_id} has nothing to install",
                               "release a build of its image first" if group else "give it a group")
        latest = self.store.latest(group.image)
        if group.auto_update and group.version is None and group.rollout is None and latest is not None \
                and latest.version == offered.version:
            return None
        return offered.version


def _pick(releases: list[Release], version: str | None) -> Release | None:
    """The release of ``version`` in a listing the policy chose it from (so it is there)."""
    if version is None:
        return None
    for release in reversed(releases):  # the newest is the usual pick
        if release.version == version:
            return release
    return None
