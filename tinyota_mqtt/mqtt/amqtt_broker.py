"""amqtt with our gate in front and its retained-message delivery fixed (see ``broker.py``).

Imported only when the embedded broker starts: amqtt is an optional dependency. Everything here
is written against amqtt 0.12.1's ``Broker``; the overridden methods are private ones, so
``test_broker.py`` checks each behaviour against the running broker, not against this code.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.errors import AMQTTError, MQTTError, NoDataError
from amqtt.mqtt.connack import NOT_AUTHORIZED, ConnackPacket
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin

from tinyota_mqtt.mqtt.access import topic_matches

if TYPE_CHECKING:
    from tinyota_mqtt.mqtt.broker import Gate


class GatePlugin(BaseAuthPlugin, BaseTopicPlugin):  # type: ignore[misc]
    """amqtt's authentication and topic hooks, both answered by our ``Gate``.

    amqtt asks ``topic_filtering`` on SUBSCRIBE (the filter), on PUBLISH (before it forwards or
    retains a message) and on RECEIVE (before it delivers a message to a subscriber).
    """

    @dataclass
    class Config:
        gate: Any = None

    async def authenticate(self, *, session: Any) -> bool:
        gate: Gate = self.config.gate
        return await gate.admit(session)

    async def topic_filtering(self, *, session: Any = None, topic: str | None = None,
                              action: Any = None) -> bool:
        gate: Gate = self.config.gate
        if session is None or topic is None:
            return False
        if action == Action.PUBLISH:
            return gate.access.may_publish(session.username, topic)
        if action == Action.SUBSCRIBE:
            return gate.access.may_subscribe(session.username, topic)
        return gate.access.may_receive(session.username, topic)


class GatedBroker(Broker):  # type: ignore[misc]
    def __init__(self, config: dict[str, Any], gate: Gate) -> None:
        super().__init__(config)
        self._gate = gate

    def _matches(self, topic: str, a_filter: str) -> bool:
        # One wildcard rule for live delivery, retained delivery and the ACL (access.py).
        return topic_matches(a_filter, topic)

    async def _initialize_client_session(self, reader: Any, writer: Any, remote_address: str,
                                         remote_port: int) -> tuple[Any, Any]:
        """Read the CONNECT, authenticate it, and only then take over, resume or drop a session.

        amqtt looks the session up (and, for a clean session, deletes it) before authenticating,
        so a client that is then refused had already wiped the subscriptions of whoever owns that
        client id, the server's included.
        """
        try:
            handler, incoming = await BrokerProtocolHandler.init_from_connect(reader, writer, self.plugins_manager)
        except (AMQTTError, MQTTError, NoDataError) as exc:
            await writer.close()
            raise MQTTError(f"no valid CONNECT from {remote_address}:{remote_port}: {exc}") from None
        if not await self._gate.admit(incoming):
            # 5, "not authorized", is what mosquitto answers a bad login with under MQTT 3.1.1.
            await ConnackPacket.build(0, NOT_AUTHORIZED).to_stream(writer)
            await writer.close()
            raise MQTTError("refused")
        client_id = incoming.client_id  # never empty: amqtt makes one up for an empty id
        kept, kept_handler = self._sessions.get(client_id, (None, None))
        if kept is not None and kept.username == incoming.username and not incoming.clean_session:
            # Resume (and, in _handle_client_session, take over) the user's own persistent session.
            for name in ("will_flag", "will_retain", "will_message", "will_topic", "will_qos",
                         "keep_alive", "password"):
                setattr(kept, name, getattr(incoming, name))
            incoming = kept
            incoming.parent = 1
        else:
            # A session is resumed only by the user who made it: its queued messages were checked
            # against that user's rights, not the newcomer's. Whoever held the id is cut off now
            # (MQTT 3.1.1 section 3.1.4), not left running beside the new connection.
            if kept is not None and kept_handler is not None and kept.transitions.is_connected():
                await kept_handler.handle_connection_closed()
                await kept_handler.stop()
            await self._delete_session(client_id)
            incoming.parent = 0
        delay = self.config.get("timeout-disconnect-delay", 0)
        if incoming.keep_alive > 0 and isinstance(delay, int):
            incoming.keep_alive += delay
        return handler, incoming

    async def _publish_retained_messages_for_subscription(self, subscription: tuple[str, int],
                                                          session: Any) -> None:
        """Send ``session`` the retained messages its own ``subscription`` matches and it may read.

        amqtt also calls this at every connect for each filter that *any* client holds, which is
        how a new subscriber got other topics' retained messages (MQTT 3.1.1 section 3.3.1.3 says
        only matching ones): a filter this session does not hold sends nothing.
        """
        topic_filter, qos = subscription
        holders = self._subscriptions.get(topic_filter, ())
        if not any(held.client_id == session.client_id for held, _ in holders):
            return
        handler = self._get_handler(session)
        if handler is None:
            return
        sends = []
        for topic, retained in list(self._retained_messages.items()):
            if not topic_matches(topic_filter, topic):
                continue
            if not await self._topic_filtering(session, topic, Action.RECEIVE):
                continue
            sent_qos = qos if retained.qos is None else min(qos, retained.qos)
            sends.append(asyncio.ensure_future(handler.mqtt_publish(topic, retained.data, sent_qos, retain=True)))
        if sends:
            await asyncio.wait(sends)
