"""The server owns its retained topics: what someone else writes there is put right.

On a broker where anyone may publish, a retained announcement, entity state, discovery config or
"server offline" written by someone else would stay until the server happened to publish there
again. The server subscribes to those topics; a payload that differs from what it last sent
(nothing, for an update topic it never wrote) is replaced within seconds and logged once per topic.

Our own publishes come back to us too (MQTT 3.1.1 has no "no local"), and several may be in
flight to one topic at once, so a difference is acted on only when it still stands a moment
later: by then the echo of our latest publish has arrived and settled it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from tinyota_mqtt.fleet.publisher import Publisher

log = logging.getLogger("tinyota.service")

SETTLE_SECONDS = 1.0  # longer than a round trip to the broker, shorter than anyone would notice


class RetainedGuard:
    def __init__(self, publisher: Publisher, *, clock: Callable[[], float],
                 expected: Callable[[str], bytes | None]) -> None:
        """``expected(topic)`` is what the topic should hold (b"" for nothing), or None if the
        topic is not ours to guard."""
        self.publisher = publisher
        self.clock = clock
        self.expected = expected
        self._suspect: dict[str, float] = {}  # topic → when it first held something else
        self._warned: set[str] = set()

    def saw(self, topic: str, payload: bytes) -> None:
        want = self.expected(topic)
        if want is None or payload == want:
            self._suspect.pop(topic, None)
        else:
            self._suspect.setdefault(topic, self.clock())

    def restore(self) -> None:
        """Called by the tick: put back every topic that has held a foreign payload long enough."""
        if not self._suspect:
            return
        now = self.clock()
        for topic, since in list(self._suspect.items()):
            if now - since < SETTLE_SECONDS:
                continue
            del self._suspect[topic]
            want = self.expected(topic)
            if want is None:
                continue
            if topic not in self._warned:
                self._warned.add(topic)
                log.warning("%s held a retained message this server did not write; put back its own "
                            "(someone can publish there: see docs/mosquitto.md for an ACL)", topic)
            self.publisher.publish(topic, want, retain=True, force=True)
