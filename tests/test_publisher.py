"""The publisher's two promises (fleet/publisher.py), on their own: a retained message goes out
only when it changed, and what waits for a commit goes out only at ``release()``, newest first
superseded. The bus here keeps everything it is given, QoS included (1, always)."""

from __future__ import annotations

from tinyota_mqtt.fleet.publisher import Publisher


class Bus:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bool, int]] = []

    def publish(self, topic: str, payload: bytes, *, retain: bool, qos: int = 1) -> None:
        self.sent.append((topic, payload, retain, qos))


def publisher() -> tuple[Publisher, Bus]:
    p, bus = Publisher(), Bus()
    p.bus = bus
    return p, bus


def test_a_retained_message_goes_out_once_until_it_changes_or_is_forced() -> None:
    p, bus = publisher()
    p.publish("t/state", b"A", retain=True)
    p.publish("t/state", b"A", retain=True)  # unchanged: the broker holds it already
    assert bus.sent == [("t/state", b"A", True, 1)] and p.sent("t/state") == b"A"
    p.publish("t/other", b"A", retain=True)  # another topic is another message
    p.publish("t/state", b"A", retain=True, force=True)  # a repair is sent whatever we sent before
    p.publish("t/state", b"B", retain=True)
    assert bus.sent[1:] == [("t/other", b"A", True, 1), ("t/state", b"A", True, 1), ("t/state", b"B", True, 1)]
    assert p.sent("t/state") == b"B" and p.sent("t/nothing") is None


def test_messages_that_are_not_retained_always_go_and_are_not_remembered() -> None:
    p, bus = publisher()
    p.publish("t/sync", b"x", retain=False)
    p.publish("t/sync", b"x", retain=False)
    assert bus.sent == [("t/sync", b"x", False, 1)] * 2 and p.sent("t/sync") is None


def test_after_a_reconnect_everything_is_sent_again() -> None:
    p, bus = publisher()
    p.publish("t/state", b"A", retain=True)
    p.forget_sent()
    assert p.sent("t/state") is None
    p.publish("t/state", b"A", retain=True)
    assert bus.sent == [("t/state", b"A", True, 1)] * 2


def test_what_waits_for_a_commit_goes_at_release_and_a_newer_message_supersedes_it() -> None:
    p, bus = publisher()
    p.after_commit("t/a/update", b"first")
    p.after_commit("t/a/update", b"second")  # newest wins in the outbox
    p.after_commit("t/b/update", b"b")
    p.command_after_commit("cmnd/b/OtaUrl", b"http://x/b")
    p.command_after_commit("cmnd/b/Upgrade", b"1")
    assert bus.sent == []
    p.publish("t/b/update", b"", retain=True)  # withdrawn before the commit: the waiting one never goes
    p.release()
    assert bus.sent == [("t/b/update", b"", True, 1), ("t/a/update", b"second", True, 1),
                        ("cmnd/b/OtaUrl", b"http://x/b", False, 1), ("cmnd/b/Upgrade", b"1", False, 1)]
    assert p.sent("t/a/update") == b"second"
    p.release()  # nothing waits any more
    assert len(bus.sent) == 4


def test_a_forced_repair_does_not_drop_what_waits_for_a_commit() -> None:
    p, bus = publisher()
    p.after_commit("t/a/update", b"new")
    p.publish("t/a/update", b"old", retain=True, force=True)  # the guard puts back what the broker lost
    p.release()
    assert bus.sent == [("t/a/update", b"old", True, 1), ("t/a/update", b"new", True, 1)]
