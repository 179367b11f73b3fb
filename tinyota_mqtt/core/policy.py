"""Which release each device should run: pure decisions over the config and the store's listing.

Precedence, highest first:
1. a per-device target set on command (``tinyota install``, the API, Home Assistant's button);
2. the group's pinned ``version``;
3. the latest release of the group's image, if the group updates automatically.
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
    if group.auto_update and releases:
        return releases[-1].version
    return None
