"""The MQTT link itself (mqtt/client.py) against a real mosquitto: how it uses its socket and how
it hands messages over. The server's behaviour on top of it is in test_mqtt.py."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import Mosquitto, wait_until
from tinyota_mqtt.mqtt.client import LinkSettings, MqttLink


@pytest.fixture
def links(broker: Mosquitto) -> Iterator[Callable[..., MqttLink]]:
    made: list[MqttLink] = []

    def make(subscriptions: list[tuple[str, int]], on_message: Callable[[str, bytes, bool], None],
             **kw: Any) -> MqttLink:
        link = MqttLink(LinkSettings(url=broker.url, client_id=f"link-{uuid.uuid4().hex[:8]}"),
                        subscriptions, on_message=on_message, **kw)
        made.append(link)
        link.start()
        assert link.connected.wait(10), "the link did not connect"
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
    wait_until(lambda: link.connected.is_set() and link._client.socket() not in (None, first), 15,
               "the link to reconnect")
    assert link._client.socket().getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
