"""The one place that speaks paho-mqtt.

paho runs its own network thread (``loop_start``): it reconnects with backoff on its own, and
it reads TLS records correctly, which a selector-driven socket can miss when the TLS layer has
buffered bytes. Every callback is handed to the owner through ``dispatch``; the server passes
``loop.call_soon_threadsafe`` so all its state stays on the event loop thread. ``publish`` is
thread-safe in paho 2.x and may be called from anywhere.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from tinyota_mqtt.errors import BrokerError

log = logging.getLogger("tinyota.mqtt")

Dispatch = Callable[..., Any]


def _direct(fn: Callable[..., Any], *args: Any) -> None:
    fn(*args)


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def broker_address(url: str) -> BrokerAddress:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise BrokerError(f"broker URL {url!r} is not mqtt://host[:port] or mqtts://host[:port]")
    if parts.username or parts.password:
        raise BrokerError("put broker credentials in mqtt.username / mqtt.password, not in the URL",
                          "URLs end up in logs")
    tls = parts.scheme == "mqtts"
    return BrokerAddress(parts.hostname, parts.port or (8883 if tls else 1883), tls)


@dataclass(frozen=True)
class LinkSettings:
    url: str
    client_id: str
    username: str | None = None
    password: str | None = None
    keepalive: int = 60
    protocol: str = "3.1.1"
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    will: tuple[str, bytes] | None = None  # retained, QoS 1
    online: bytes | None = None  # published retained on the will topic after each connect


class MqttLink:
    """A connection that stays up: subscribes and announces itself again after every reconnect."""

    def __init__(self, settings: LinkSettings, subscriptions: Iterable[tuple[str, int]], *,
                 on_message: Callable[[str, bytes, bool], None],
                 on_connected: Callable[[], None] | None = None,
                 on_disconnected: Callable[[str], None] | None = None,
                 dispatch: Dispatch = _direct) -> None:
        self.settings = settings
        self.address = broker_address(settings.url)
        self._subs = list(subscriptions)
        self._on_message, self._on_connected = on_message, on_connected
        self._on_disconnected = on_disconnected
        self._dispatch = dispatch
        self.connected = threading.Event()
        self._stopping = False
        self._last_problem: str | None = None
        version = paho.MQTTv5 if settings.protocol == "5" else paho.MQTTv311
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=settings.client_id,
                             protocol=version, reconnect_on_failure=True)
        if settings.username is not None:
            client.username_pw_set(settings.username, settings.password)
        if self.address.tls:
            client.tls_set(ca_certs=settings.ca, certfile=settings.cert, keyfile=settings.key,
                           cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        if settings.will is not None:
            client.will_set(settings.will[0], settings.will[1], qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._connected
        client.on_connect_fail = self._connect_failed
        client.on_disconnect = self._disconnected
        client.on_message = self._message
        self._client = client

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self._client.connect_async(self.address.host, self.address.port, self.settings.keepalive)
        self._client.loop_start()

    def stop(self, timeout: float = 2.0) -> None:
        """Say goodbye properly: mark ourselves offline (the will is not sent on a clean exit)."""
        self._stopping = True
        if self.settings.will is not None and self.connected.is_set():
            info = self._client.publish(self.settings.will[0], self.settings.will[1], qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout)
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, topic: str, payload: bytes, *, retain: bool, qos: int = 1) -> None:
        # While disconnected paho queues QoS 1 messages and sends them after reconnecting.
        self._client.publish(topic, payload, qos=qos, retain=retain)

    def publish_and_wait(self, topic: str, payload: bytes, *, retain: bool, qos: int = 1,
                         timeout: float = 5.0) -> bool:
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()

    # -- paho callbacks (paho's thread) ----------------------------------------------------------

    def _connected(self, client: paho.Client, _ud: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            self._problem(f"broker {self.address} refused the connection: {reason}"
                          + (" (check mqtt.username / mqtt.password)" if reason.value in (4, 5, 134, 135)
                             else ""))
            return
        if self._subs:
            client.subscribe(self._subs)
        if self.settings.will is not None and self.settings.online is not None:
            client.publish(self.settings.will[0], self.settings.online, qos=1, retain=True)
        self.connected.set()
        if self._last_problem is not None:
            log.info("connected to broker %s again", self.address)
        else:
            log.info("connected to broker %s as %s", self.address, self.settings.client_id)
        self._last_problem = None
        if self._on_connected is not None:
            self._dispatch(self._on_connected)

    def _connect_failed(self, _client: paho.Client, _ud: Any) -> None:
        self._problem(f"cannot reach broker {self.address}; retrying")

    def _disconnected(self, _client: paho.Client, _ud: Any, _flags: Any, reason: Any, _props: Any) -> None:
        was = self.connected.is_set()
        self.connected.clear()
        if was and not self._stopping:
            self._problem(f"lost broker {self.address} ({reason}); reconnecting")
        if self._on_disconnected is not None:
            self._dispatch(self._on_disconnected, str(reason))

    def _message(self, _client: paho.Client, _ud: Any, msg: paho.MQTTMessage) -> None:
        self._dispatch(self._on_message, msg.topic, bytes(msg.payload), bool(msg.retain))

    def _problem(self, text: str) -> None:
        # Say each distinct problem once, not once per retry.
        if text != self._last_problem:
            log.warning("%s", text)
            self._last_problem = text
