"""amqtt with our gate in front and its retained-message delivery fixed (see ``broker.py``).

Imported only when the embedded broker starts: amqtt is an optional dependency. Everything here
is written against amqtt 0.12.1's ``Broker``; the overridden methods are private ones, so
``test_broker.py`` checks each behaviour against the running broker, not against this code.

The checks are overrides of ``_authenticate`` and ``_topic_filtering`` rather than amqtt plugins:
amqtt runs plugin hooks as tasks and gathers them, which yields to the loop in the middle of its
broadcast loop over the subscriptions dict; a client subscribing at that moment then made the
broadcast fail with "dictionary changed size during iteration" and the message was lost. Our
answer is synchronous, so the loop never yields there.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.errors import AMQTTError, MQTTError, NoDataError
from amqtt.mqtt.connack import NOT_AUTHORIZED, ConnackPacket
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler

from tinyota_mqtt.mqtt.access import topic_matches

if TYPE_CHECKING:
    from tinyota_mqtt.mqtt.broker import Gate


class GatedBroker(Broker):  # type: ignore[misc]
    def __init__(self, config: dict[str, Any], gate: Gate) -> None:
        super().__init__(config)
        self._gate = gate
        self._sends: set[asyncio.Future[Any]] = set()  # retained deliveries in flight

    async def _authenticate(self, session: Any, _listener: Any) -> bool:
        # Already asked in _initialize_client_session; asked again (an HMAC, cached) in case
        # amqtt grows another path to a connected session.
        return await self._gate.admit(session)

    async def _topic_filtering(self, session: Any, topic: str, action: Any) -> bool:
        access = self._gate.access
        username = session.username if session is not None else None
        if action == Action.PUBLISH:
            return access.may_publish(username, topic)
        if action == Action.SUBSCRIBE:
            return access.may_subscribe(username, topic)
        return access.may_receive(username, topic)  # Action.RECEIVE: before each delivery

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
        for topic, retained in list(self._retained_messages.items()):
            if not topic_matches(topic_filter, topic) or not self._gate.access.may_receive(session.username, topic):
                continue
            sent_qos = qos if retained.qos is None else min(qos, retained.qos)
            # Started, not awaited: amqtt calls this from inside a loop over its subscriptions
            # dict, which must not yield (see above). Tasks start in order, so these still go
            # out before any later live message.
            send = asyncio.ensure_future(handler.mqtt_publish(topic, retained.data, sent_qos, retain=True))
            self._sends.add(send)
            send.add_done_callback(self._sent)

    def _sent(self, send: asyncio.Future[Any]) -> None:
        self._sends.discard(send)
        if not send.cancelled():
            send.exception()  # a client gone mid-send: nothing to do, but retrieve it
