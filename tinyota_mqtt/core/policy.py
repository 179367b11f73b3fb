"""Which release each device should run: pure decisions over the config and the store's listing.

Precedence, highest first:
1. a per-device target set on command (``tinyota install``, the API, Home Assistant's button);
2. the group's pinned ``version``;
3. the latest release of the group's image, if the group updates automatically (and without a
   ``rollout:`` policy: then the rollout commands each device's version wave by wave).
An on-command group without a pin has no target until someone installs one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from tinyota_mqtt.config.model import Config


class HasVersion(Protocol):
    @property
    def version(self) -> str: ...


def target_version(config: Config, device_id: str, releases: Sequence[HasVersion],
                   commanded: str | None = None) -> str | None:
    """The version ``device_id`` should run, or None for "leave it alone".

    ``releases`` is the device image's listing, lowest version first.
    """
    group = config.group_of(device_id)
    if group is None:
        return None
    available = {r.version for r in releases}
    for wanted in (commanded, group.version):
        if wanted is not None:
            return wanted if wanted in available else None
    if group.auto_update and group.rollout is None and releases:
        # With a rollout policy, a new release reaches a device only when its wave does
        # (fleet/rollouts.py commands it), never all at once through here.
        return releases[-1].version
    return None


def refusal(config: Config, device_id: str, image: str, version: str, *,
            target: str | None, installed: str | None) -> str | None:
    """Why ``device_id`` may not download ``image`` ``version``, or None when it may.

    A device is served only what the server told it to run (its current target) or what it
    already runs, so an announcement forged by someone else, even one pointing at this server,
    cannot make it fetch (and flash) an older release. The answer depends only on the device's own
    facts, never on what the store holds, so a refusal says nothing about which releases exist.
    """
    own = config.image_of(device_id)
    if own is None:
        return "this device is in no group, so no image is announced to it"
    if image != own.name:
        return f"image {image} is not this device's image ({own.name})"
    if version in (target, installed):
        return None
    if target is None:
        return f"{version} was not announced to this device (nothing is)"
    return f"{version} was not announced to this device (its target is {target})"


def offered_version(config: Config, device_id: str, releases: Sequence[HasVersion],
                    commanded: str | None = None, installed: str | None = None) -> str | None:
    """The version a device may run now: what Home Assistant shows as its ``latest_version``.

    Unlike ``target_version`` this ignores ``auto_update`` and holds, so an on-command group is
    offered each new release (Install in HA then installs it), and a commanded version counts
    only until the device runs it: after that the group's pin, else the newest release, shows.
    """
    group = config.group_of(device_id)
    if group is None:
        return None
    available = {r.version for r in releases}
    if commanded is not None and commanded != installed and commanded in available:
        return commanded
    if group.version is not None:
        return group.version if group.version in available else None
    return releases[-1].version if releases else None
