"""The MQTT link itself (mqtt/client.py) against a real mosquitto: how it uses its socket and how
it hands messages over. The server's behaviour on top of it is in test_mqtt.py."""

from __future__ import annotations

import logging
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import Mosquitto, wait_until
from tinyota_mqtt.mqtt.client import MAX_BATCH, LinkSettings, MqttLink, Subscription


@pytest.fixture
def links(broker: Mosquitto) -> Iterator[Callable[..., MqttLink]]:
    made: list[MqttLink] = []

    def make(subscriptions: list[tuple[str, int]], on_message: Callable[[str, bytes, bool], None],
             **kw: Any) -> MqttLink:
        link = MqttLink(LinkSettings(url=broker.url, client_id=f"link-{uuid.uuid4().hex[:8]}"),
                        subscriptions, on_message=on_message, **kw)
        made.append(link)
        link.start()
        wait_until(lambda: link.up, 10, "the link to connect")
        return link

    yield make
    for link in made:
        link.stop()


def test_the_link_sends_each_packet_at_once(links: Any) -> None:
    # Nagle's algorithm would hold a small publish back while an earlier one is unacknowledged,
    # and the broker's delayed ACK made every round of a burst wait for it.
    link = links([], lambda *_: None)
    sock = link._client.socket()
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_the_link_reconnects_with_nagle_off_too(links: Any, broker: Mosquitto) -> None:
    link = links([], lambda *_: None)
    first = link._client.socket()
    first.shutdown(socket.SHUT_RDWR)  # the connection drops; the link makes a new one
    wait_until(lambda: link.up and link._client.socket() not in (None, first), 15,
               "the link to reconnect")
    assert link._client.socket().getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_a_burst_is_handed_over_in_batches_in_order_and_whole(links: Any, probes: Any, broker: Mosquitto,
                                                              prefix: str) -> None:
    """One dispatch per drained read, not one per message: the event loop wakes once per batch."""
    gate = threading.Event()
    dispatches: list[int] = []
    got: list[bytes] = []

    def dispatch(fn: Callable[..., Any], *args: Any) -> None:
        if args and isinstance(args[0], list):
            dispatches.append(len(args[0]))
        fn(*args)
        gate.wait(10)  # the first batch holds the network thread while the burst piles up

    link = links([(f"{prefix}/burst/#", 0)], lambda _t, payload, _r: got.append(payload), dispatch=dispatch)
    sender = probes(broker.url)
    sender.publish(f"{prefix}/burst/first", b"0", qos=1)
    wait_until(lambda: got, 10, "the first message")
    count = 3 * MAX_BATCH
    for n in range(1, count + 1):
        sender.client.publish(f"{prefix}/burst/{n % 7}", str(n).encode(), qos=0)
    sender.publish(f"{prefix}/burst/last", b"last", qos=1)  # acknowledged: the broker has routed them all
    gate.set()
    wait_until(lambda: got and got[-1] == b"last", 10, "the whole burst")
    assert got == [str(n).encode() for n in range(count + 1)] + [b"last"]
    assert dispatches and max(dispatches) <= MAX_BATCH
    assert len(dispatches) <= 1 + 8 + 2, dispatches  # the first, ~3 full batches, the rest in a few
    assert link.up


def test_a_message_whose_handler_fails_does_not_lose_the_rest_of_its_batch(
        links: Any, probes: Any, broker: Mosquitto, prefix: str, caplog: Any) -> None:
    got: list[bytes] = []

    def on_message(_topic: str, payload: bytes, _retained: bool) -> None:
        if payload == b"bad":
            raise ValueError("a bug in a handler")
        got.append(payload)

    links([(f"{prefix}/m", 0)], on_message)
    sender = probes(broker.url)
    with caplog.at_level(logging.ERROR, "tinyota.mqtt"):
        for payload in (b"1", b"bad", b"2"):
            sender.client.publish(f"{prefix}/m", payload, qos=0)
        sender.publish(f"{prefix}/m", b"3", qos=1)
        wait_until(lambda: got[-1:] == [b"3"], 10, "the last message")
    assert got == [b"1", b"2", b"3"]
    assert [r.getMessage() for r in caplog.records] == [f"handling a message on {prefix}/m failed"]


def test_with_mqtt_5_our_own_publishes_come_back_only_where_asked(broker: Mosquitto, probes: Any,
                                                                 prefix: str) -> None:
    got: list[tuple[str, bytes]] = []
    probes(broker.url).publish(f"{prefix}/guarded", b"someone else's", retain=True)
    link = MqttLink(LinkSettings(url=broker.url, client_id=f"link-{uuid.uuid4().hex[:8]}", protocol="5"),
                    [Subscription(f"{prefix}/guarded", qos=0, echo=False), Subscription(f"{prefix}/echoed")],
                    on_message=lambda topic, payload, _r: got.append((topic, payload)))
    link.start()
    try:
        # Someone else's message comes (and says both subscriptions are in place: one SUBSCRIBE).
        wait_until(lambda: (f"{prefix}/guarded", b"someone else's") in got, 10, "the other client's message")
        link.publish(f"{prefix}/guarded", b"ours", retain=False)
        link.publish(f"{prefix}/echoed", b"ours too", retain=False)  # published after: comes back after
        wait_until(lambda: (f"{prefix}/echoed", b"ours too") in got, 10, "our echo where one was asked for")
        assert (f"{prefix}/guarded", b"ours") not in got
    finally:
        link.stop()


def test_mqtt_3_1_1_sends_qos_1_messages_without_a_window(links: Any) -> None:
    """paho's default lets 20 QoS 1 messages be unacknowledged and queues the rest: a release to
    1000 devices waited out 50 round trips. 3.1.1 has no limit to respect (MQTT 5 brokers set one)."""
    assert links([], lambda *_: None)._client.max_inflight_messages == 0
