"""The one place the fleet publishes from.

Two promises live here. A retained message goes out only when it changed (progress reports
re-derive the same entity state many times over, and the broker keeps the last one anyway).
And an announcement goes out only after the attempt it names is committed: the announcer puts
it in the outbox, and ``release()`` sends the outbox after a successful ``Registry.flush()``. A
crash in between loses nothing: the attempt is on disk, and every open attempt's announcement
is published again when the server connects (``Announcer.republish``).
"""

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
        self._sent: dict[str, bytes] = {}  # the last retained payload per topic
        self._outbox: dict[str, bytes] = {}  # retained, waiting for the next commit; newest wins
        self._commands: list[tuple[str, bytes]] = []  # not retained, waiting likewise; in order

    def publish(self, topic: str, payload: bytes, *, retain: bool, force: bool = False) -> None:
        if not force:  # a newer payload supersedes what waited; a forced repair of the old one does not
            self._outbox.pop(topic, None)
        if retain and not force and self._sent.get(topic) == payload:
            return
        if retain:
            self._sent[topic] = payload
        self.bus.publish(topic, payload, retain=retain, qos=1)

    def after_commit(self, topic: str, payload: bytes) -> None:
        """Publish ``payload`` retained on ``topic`` once the registry has committed."""
        self._outbox[topic] = payload

    def command_after_commit(self, topic: str, payload: bytes) -> None:
        """Publish a command (not retained) once the registry has committed, after those before it.

        For devices told by command rather than a retained announcement (Tasmota): the attempt a
        command starts, and its download token, exist on disk before the device hears of them.
        """
        self._commands.append((topic, payload))

    def release(self) -> None:
        """Call after a successful flush: send what waited for it."""
        waiting, self._outbox = self._outbox, {}
        for topic, payload in waiting.items():
            self.publish(topic, payload, retain=True)
        commands, self._commands = self._commands, []
        for topic, payload in commands:
            self.bus.publish(topic, payload, retain=False, qos=1)

    def sent(self, topic: str) -> bytes | None:
        """What we last published there (retained), or None if nothing."""
        return self._sent.get(topic)

    def forget_sent(self) -> None:
        """After a reconnect the broker may have lost what we sent: send everything again."""
        self._sent.clear()
