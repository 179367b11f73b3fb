"""The tinyota kind: the esp_client sketch (and the ESPHome snippet), told by a retained
announcement on ``<prefix>/<device>/update`` and heard on its ``status`` and ``availability``
topics (docs/protocol.md). This is the behaviour the server always had, behind the driver."""

from __future__ import annotations

import dataclasses

from tinyota_mqtt.config.model import Config
from tinyota_mqtt.core import protocol
from tinyota_mqtt.core.attempts import Attempt
from tinyota_mqtt.fleet.publisher import Publisher
from tinyota_mqtt.fleet.reports import Reports
from tinyota_mqtt.signing import Signer
from tinyota_mqtt.store import Release


class TinyotaDriver:
    kind = "tinyota"

    def __init__(self, config: Config, publisher: Publisher, reports: Reports, signer: Signer | None) -> None:
        self.config = config
        self.publisher = publisher
        self.reports = reports
        self.signer = signer
        self.topics = protocol.Topics(config.mqtt.prefix)

    def subscriptions(self) -> list[str]:
        return []  # protocol.Topics.subscriptions() already covers the prefix, for every kind

    def announcement(self, device_id: str, release: Release, attempt_id: str) -> protocol.Announcement:
        # The device and image are signed too (docs/protocol.md), so a signature cannot be replayed.
        ann = protocol.Announcement(
            id=attempt_id, version=release.version,
            url=protocol.firmware_url(self.config.server.public_url, release.image, release.version),
            size=release.size, md5=release.md5, sha256=release.sha256, image=release.image, device=device_id)
        if self.signer is not None:
            ann = dataclasses.replace(ann, sig=self.signer.sign(ann.manifest()))
        return ann

    def tell(self, device_id: str, release: Release, attempt: Attempt) -> None:
        self.publisher.after_commit(self.topics.update(device_id),
                                    self.announcement(device_id, release, attempt.id).payload())

    def withdraw(self, device_id: str, attempt: Attempt | None) -> None:
        self.publisher.after_commit(self.topics.update(device_id), b"")  # an empty retained payload clears it

    def republish(self, attempt: Attempt, release: Release) -> None:
        self.publisher.publish(self.topics.update(attempt.device),
                               self.announcement(attempt.device, release, attempt.id).payload(), retain=True)

    def handle(self, topic: str, payload: bytes, retained: bool) -> bool:
        parts = self.topics.split(topic)
        if parts is None:
            return False
        device_id, kind = parts
        device = self.config.devices.get(device_id)
        if device is not None and device.kind == "tasmota" and kind in ("status", "availability"):
            # It speaks Tasmota's topics; a tinyota report in its name proves nothing about it.
            self.reports.log_once(device_id, f"ignored {kind} message: a Tasmota device reports on its own topics")
            return True
        self.reports.handle_device_message(topic, payload, retained)
        return True
