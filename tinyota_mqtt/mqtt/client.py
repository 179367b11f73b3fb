"""The one place that speaks paho-mqtt.

Each link runs one network thread of its own. It is our loop, not paho's ``loop_start()``:
paho's waits with ``select()``, which cannot watch a descriptor numbered 1024 or above, and a
server with a thousand downloads open gets exactly such numbers for a reconnect. Ours waits with
``selectors`` (epoll) on paho's socket and a wake-up pipe, and drives paho through its external
loop API (``loop_read``, ``loop_write``, ``loop_misc``, ``reconnect``). It also drains TLS
records that the TLS layer has already buffered, which a readiness wait alone would miss.

Every callback is handed to the owner through ``dispatch``; the server passes
``loop.call_soon_threadsafe`` so all its state stays on the event loop thread. Messages go over in
batches: the thread reads every packet the socket holds (up to ``MAX_BATCH`` messages) and hands
them over with one ``dispatch``, so a burst of device reports costs the event loop one wake-up
per read, not one per message. ``publish`` may be called from any thread: paho queues the packet
and wakes our thread to write it.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

from tinyota_mqtt.errors import BrokerError

log = logging.getLogger("tinyota.mqtt")

Dispatch = Callable[..., Any]

FIRST_RETRY = 1.0  # seconds before reconnecting; doubles while the broker stays away or refuses us
MAX_RETRY = 30.0
# Messages handed over in one dispatch at most: a broker that never stops sending must not keep
# our writes (acknowledgements, publishes) and keepalive waiting, nor the loop thread starved.
MAX_BATCH = 500

Message = tuple[str, bytes, bool]  # topic, payload, retained


def next_delay(delay: float, *, accepted: bool) -> float:
    """The pause before the next reconnect after one that waited ``delay``."""
    return FIRST_RETRY if accepted else min(delay * 2, MAX_RETRY)


def _direct(fn: Callable[..., Any], *args: Any) -> None:
    fn(*args)


def no_delay(sock: Any) -> None:
    """Send each packet at once (TCP_NODELAY), which paho does not ask for.

    With Nagle's algorithm a small packet waits while an earlier one is unacknowledged, and the
    broker delays its TCP acknowledgement: every state publish and PUBACK of a burst then waits
    out that delay. The bench saw status ingestion at 714-777 msg/s with it, 2,279-2,715 without.
    """
    with contextlib.suppress(OSError, AttributeError):  # not TCP (a test's socketpair)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


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
class Subscription:
    topic: str
    qos: int = 1
    # False: our own publishes need not come back. MQTT 5 can ask for that (no_local); 3.1.1
    # cannot, so there the broker still echoes them.
    echo: bool = True


@dataclass(frozen=True)
class LinkSettings:
    url: str
    client_id: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    keepalive: int = 60
    protocol: str = "3.1.1"
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    will: tuple[str, bytes] | None = None  # retained, QoS 1
    online: bytes | None = None  # published retained on the will topic after each connect


class MqttLink:
    """A connection that stays up: subscribes and announces itself again after every reconnect."""

    def __init__(self, settings: LinkSettings, subscriptions: Iterable[Subscription | tuple[str, int]], *,
                 on_message: Callable[[str, bytes, bool], None],
                 on_connected: Callable[[], None] | None = None,
                 on_disconnected: Callable[[str], None] | None = None,
                 dispatch: Dispatch = _direct) -> None:
        self.settings = settings
        self.address = broker_address(settings.url)
        self._subs = [s if isinstance(s, Subscription) else Subscription(*s) for s in subscriptions]
        self._on_message, self._on_connected = on_message, on_connected
        self._on_disconnected = on_disconnected
        self._dispatch = dispatch
        self._up = threading.Event()  # the one record of whether we are connected: see `up`
        self._session = 0
        self._inbox: list[Message] = []  # read on our thread, not yet handed over
        self._stopping = False
        self._accepted = False  # the broker accepted the current connection (CONNACK success)
        self._last_problem: str | None = None
        version = paho.MQTTv5 if settings.protocol == "5" else paho.MQTTv311
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=settings.client_id,
                             protocol=version)
        if version == paho.MQTTv311:
            # paho sends 20 QoS 1 messages at a time by default and holds the rest until an
            # acknowledgement frees a slot: a release to a thousand devices then waits out fifty
            # round trips. MQTT 3.1.1 sets no limit; MQTT 5 brokers announce theirs (Receive
            # Maximum), which paho does not read, so there its default stays.
            client.max_inflight_messages_set(0)
        if settings.username is not None:
            client.username_pw_set(settings.username, settings.password)
        if self.address.tls:
            client.tls_set(ca_certs=settings.ca, certfile=settings.cert, keyfile=settings.key,
                           cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        if settings.will is not None:
            client.will_set(settings.will[0], settings.will[1], qos=1, retain=True)
        client.on_connect = self._connected
        client.on_disconnect = self._disconnected
        client.on_message = self._message
        # publish() from another thread queues the packet and calls this: wake our thread to write.
        client.on_socket_register_write = lambda *_args: self._wake()
        self._client = client
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread: threading.Thread | None = None

    @property
    def up(self) -> bool:
        """The broker accepted our session and it has not ended. The service reads this (and
        `session`) rather than keeping a copy of its own; see service.Link."""
        return self._up.is_set()

    @property
    def session(self) -> int:
        """How many sessions the broker has accepted so far."""
        return self._session

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self._client.connect_async(self.address.host, self.address.port, self.settings.keepalive)
        self._thread = threading.Thread(target=self._run, name=f"mqtt-{self.settings.client_id}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Say goodbye properly: mark ourselves offline (the will is not sent on a clean exit)."""
        if self.settings.will is not None and self.up:
            info = self._client.publish(self.settings.will[0], self.settings.will[1], qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout)
        self._stopping = True
        self._client.disconnect()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout + 1)
        self._wake_r.close()
        self._wake_w.close()

    # -- the network thread ----------------------------------------------------------------------

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full (a wake-up is pending anyway) or closed
            self._wake_w.send(b"x")

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._wake_r, selectors.EVENT_READ)
        delay = FIRST_RETRY
        try:
            while not self._stopping:
                sock = self._client.socket()
                if sock is None:
                    if not self._connect():
                        self._sleep(delay)
                        delay = next_delay(delay, accepted=False)
                    continue
                self._accepted = False
                no_delay(sock)
                self._serve(selector, sock)
                if self._client.socket() is None and not self._stopping:
                    # A session the broker accepted was lost: try again soon. One it refused
                    # (a wrong password) backs off like an unreachable broker: the TCP connect
                    # succeeding says nothing about the next login.
                    pause = FIRST_RETRY if self._accepted else delay
                    delay = next_delay(delay, accepted=self._accepted)
                    self._sleep(pause)
        finally:
            selector.close()

    def _connect(self) -> bool:
        try:
            self._client.reconnect()  # blocking TCP (and TLS) connect; queues CONNECT
        except (OSError, ssl.SSLError) as exc:
            self._problem(f"cannot reach broker {self.address} ({exc.__class__.__name__}: {exc}); retrying. "
                          "Is it running, and is mqtt.url right?")
            return False
        return True

    def _serve(self, selector: selectors.BaseSelector, sock: Any) -> None:
        """Pump one connection until it closes or we stop."""
        events = selectors.EVENT_READ
        selector.register(sock, events)
        try:
            while not self._stopping and self._still(sock):
                wanted = selectors.EVENT_READ | (selectors.EVENT_WRITE if self._client.want_write() else 0)
                if wanted != events:
                    selector.modify(sock, wanted)
                    events = wanted
                for key, mask in selector.select(timeout=1.0):
                    if key.fileobj is self._wake_r:
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(4096)
                        continue
                    if mask & selectors.EVENT_READ:
                        self._read(selector, sock)
                    if mask & selectors.EVENT_WRITE and self._still(sock):
                        self._client.loop_write()
                if self._still(sock):
                    self._client.loop_misc()  # keepalive pings and their time-outs
            if self._stopping and self._still(sock):
                self._client.loop_write()  # the DISCONNECT that stop() queued
        finally:
            with contextlib.suppress(KeyError, ValueError):
                selector.unregister(sock)

    def _read(self, selector: selectors.BaseSelector, sock: Any) -> None:
        """Read every packet already waiting (up to a batch), then hand the messages over at once.

        paho's ``loop_read`` reads one packet when nothing of ours awaits an acknowledgement, so
        a call per readiness event would cost a wait, a wake-up and a dispatch per message.
        """
        while True:
            self._client.loop_read()
            if len(self._inbox) >= MAX_BATCH or not self._still(sock) or not self._readable(selector, sock):
                break
        self._hand_over()

    @staticmethod
    def _readable(selector: selectors.BaseSelector, sock: Any) -> bool:
        # TLS may hold whole records already read from the socket: no readiness event announces them.
        pending = getattr(sock, "pending", None)
        if pending is not None and pending() > 0:
            return True
        return any(key.fileobj is sock and mask & selectors.EVENT_READ for key, mask in selector.select(0))

    def _hand_over(self) -> None:
        if self._inbox:
            batch, self._inbox = self._inbox, []
            self._dispatch(self._deliver, batch)

    def _deliver(self, batch: list[Message]) -> None:
        for topic, payload, retained in batch:
            try:
                self._on_message(topic, payload, retained)
            except Exception:  # one bad message must not lose the rest of its batch
                log.exception("handling a message on %s failed", topic)

    def _still(self, sock: object) -> bool:
        """Whether paho still uses ``sock`` (it closes and drops it when the connection ends)."""
        return self._client.socket() is sock

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stopping and time.monotonic() < deadline:
            time.sleep(min(0.1, deadline - time.monotonic()))

    def publish(self, topic: str, payload: bytes, *, retain: bool, qos: int = 1) -> None:
        # While disconnected paho queues QoS 1 messages and sends them after reconnecting.
        self._client.publish(topic, payload, qos=qos, retain=retain)

    # -- paho callbacks (run on our network thread) ----------------------------------------------

    def _connected(self, client: paho.Client, _ud: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            self._problem(f"broker {self.address} refused the connection: {reason}"
                          + (" (check mqtt.username / mqtt.password)" if reason.value in (4, 5, 134, 135)
                             else ""))
            return
        if self._subs:
            client.subscribe(self._subscribe_args())
        if self.settings.will is not None and self.settings.online is not None:
            client.publish(self.settings.will[0], self.settings.online, qos=1, retain=True)
        self._accepted = True
        self._session += 1  # before `up`: whoever sees the session up sees its number
        self._up.set()
        if self._last_problem is not None:
            log.info("connected to broker %s again", self.address)
        else:
            log.info("connected to broker %s as %s", self.address, self.settings.client_id)
        self._last_problem = None
        self._hand_over()  # what came before, first
        if self._on_connected is not None:
            self._dispatch(self._on_connected)

    def _disconnected(self, _client: paho.Client, _ud: Any, _flags: Any, reason: Any, _props: Any) -> None:
        was = self.up
        self._up.clear()
        if was and not self._stopping:
            self._problem(f"lost broker {self.address} ({reason}); reconnecting")
        self._hand_over()  # the messages read before the connection ended, first
        if self._on_disconnected is not None:
            self._dispatch(self._on_disconnected, str(reason))

    def _message(self, _client: paho.Client, _ud: Any, msg: paho.MQTTMessage) -> None:
        self._inbox.append((msg.topic, bytes(msg.payload), bool(msg.retain)))  # see _read

    def _subscribe_args(self) -> list[tuple[str, Any]]:
        if self._client.protocol == paho.MQTTv5:
            return [(s.topic, SubscribeOptions(qos=s.qos, noLocal=not s.echo)) for s in self._subs]
        return [(s.topic, s.qos) for s in self._subs]

    def _problem(self, text: str) -> None:
        # Say each distinct problem once, not once per retry.
        if text != self._last_problem:
            log.warning("%s", text)
            self._last_problem = text


# -- is the broker open to anyone? -----------------------------------------------------------------

def anonymous_login_accepted(settings: LinkSettings, timeout: float = 5.0) -> bool | None:
    """Connect once as a stranger would: no user name, no password, no client certificate.

    True if the broker lets that in, False if it refuses, None if it cannot be told (unreachable,
    TLS refused, no answer in time). Driven like ``MqttLink``: a selector, never paho's select().
    """
    address = broker_address(settings.url)
    version = paho.MQTTv5 if settings.protocol == "5" else paho.MQTTv311
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"tinyota-probe-{secrets.token_hex(4)}",
                         protocol=version)
    if address.tls:
        client.tls_set(ca_certs=settings.ca, cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    answers: list[bool] = []
    client.on_connect = lambda _c, _u, _f, reason, _p: answers.append(not reason.is_failure)
    try:
        client.connect(address.host, address.port, keepalive=max(10, int(timeout) * 2))
    except (OSError, ssl.SSLError, ValueError):
        return None
    sock = client.socket()
    if sock is None:
        return None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_READ)
        try:
            while not answers and client.socket() is sock and time.monotonic() < deadline:
                if client.want_write():
                    client.loop_write()
                if selector.select(timeout=0.2) or getattr(sock, "pending", lambda: 0)() > 0:
                    client.loop_read()
        except (OSError, ssl.SSLError):
            return None
        finally:
            if client.socket() is sock:
                client.disconnect()
                with contextlib.suppress(OSError, ssl.SSLError):
                    client.loop_write()  # sends DISCONNECT, then paho closes the socket
    return answers[0] if answers else None


def warn_if_anonymous(settings: LinkSettings) -> bool | None:
    """Log one WARNING when the broker accepts a client without credentials (see above)."""
    accepted = anonymous_login_accepted(settings)
    if accepted:
        log.warning("broker %s lets in clients without a user name and password: anyone who can reach it "
                    "can publish forged firmware announcements and device reports; give every client its "
                    "own login and the ACL of docs/mosquitto.md", broker_address(settings.url))
    return accepted
