"""What every device kind's driver does: tell a device, withdraw, listen, and translate.

A driver translates between the fleet and one firmware's own protocol; it decides nothing. The
announcer owns attempts (when to start one, retry, withdraw), ``fleet/reports.py`` owns outcomes
(what a report does to an attempt); a driver turns "start this attempt" into the messages its
firmware understands, and what the firmware publishes into the ``protocol.Status`` and
availability facts ``Reports`` already handles. The shapes and rules are pure functions in
``core/`` (``core/protocol.py``, ``core/tasmota.py``).
"""

from __future__ import annotations

from typing import Protocol

from tinyota_mqtt.core.attempts import Attempt
from tinyota_mqtt.store import Release


class Driver(Protocol):
    kind: str

    def subscriptions(self) -> list[str]:
        """Topic filters the server subscribes to for this kind, beyond the tinyota prefix's."""
        ...

    def tell(self, device_id: str, release: Release, attempt: Attempt) -> None:
        """Queue what makes the device install ``release`` for ``attempt``; it goes out once the
        attempt is committed (``Publisher.after_commit`` / ``command_after_commit``)."""
        ...

    def withdraw(self, device_id: str, attempt: Attempt | None) -> None:
        """The device should no longer act on ``attempt`` (cancelled, superseded, not its target)."""
        ...

    def republish(self, attempt: Attempt, release: Release) -> None:
        """After a (re)connect: make sure the device can still learn of this open attempt."""
        ...

    def handle(self, topic: str, payload: bytes, retained: bool) -> bool:
        """Translate one incoming message for ``Reports``; False when the topic is not this kind's."""
        ...
