"""The one place the fleet publishes from, so a retained message goes out only when it changed."""

from __future__ import annotations

from typing import Protocol


class Bus(Protocol):
    """Where the service publishes. The MQTT adapter is one; tests may record instead."""

    def publish(self, topic: str, payload: bytes, *, retain: bool, qos: int = 1) -> None: ...


class NullBus:
    def publish(self, topic: str, payload: bytes, *, retain: bool, qos: int = 1) -> None:
        pass


class Publisher:
    def __init__(self) -> None:
        self.bus: Bus = NullBus()
        # The last retained payload per topic. Progress reports re-derive the same entity state
        # many times over; without this each would be a publish, and the broker keeps the last
        # one anyway.
        self._sent: dict[str, bytes] = {}

    def publish(self, topic: str, payload: bytes, *, retain: bool, force: bool = False) -> None:
        if retain and not force and self._sent.get(topic) == payload:
            return
        if retain:
            self._sent[topic] = payload
        self.bus.publish(topic, payload, retain=retain, qos=1)

    def forget_sent(self) -> None:
        """After a reconnect the broker may have lost what we sent: send everything again."""
        self._sent.clear()
