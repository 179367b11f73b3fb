"""Wires the parts into one running process: store, registry, MQTT link, HTTP server, clock.

One asyncio loop carries it all. The paho thread only hands messages over (see mqtt/client.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tinyota_mqtt.config.model import Config
from tinyota_mqtt.core import hass
from tinyota_mqtt.core.passwords import Secret
from tinyota_mqtt.http.app import make_app, refuse_default_admin, start_http
from tinyota_mqtt.mqtt.access import SERVER_USER
from tinyota_mqtt.mqtt.broker import EmbeddedBroker
from tinyota_mqtt.mqtt.client import LinkSettings, MqttLink, Subscription, warn_if_anonymous
from tinyota_mqtt.service import Service

log = logging.getLogger("tinyota")
TICK_SECONDS = 0.5


def _call_soon(fn: Callable[[], None]) -> None:
    """The service runs on the event loop thread only: put ``fn`` at the end of the loop's queue."""
    asyncio.get_running_loop().call_soon(fn)


@dataclass(frozen=True)
class Overrides:
    host: str | None = None
    port: int | None = None
    mqtt_url: str | None = None  # "none" turns MQTT off (HTTP only)


class Server:
    def __init__(self, config: Config, overrides: Overrides = Overrides()) -> None:
        self.config = config
        self.overrides = overrides
        self.service = Service(config, defer=_call_soon)
        self.broker: EmbeddedBroker | None = None
        self.link: MqttLink | None = None
        self.port: int = 0
        self.mqtt_url: str | None = None
        self._http: Any = None
        self._ticker: asyncio.Task[None] | None = None
        self._probe: asyncio.Future[bool | None] | None = None

    async def start(self) -> None:
        refuse_default_admin(self.config, self.overrides.host or self.config.server.host)
        loop = asyncio.get_running_loop()
        for leftover in self.service.store.sweep():
            log.info("removed leftover of an interrupted upload: %s", leftover)
        mqtt = self.config.mqtt
        url = self.overrides.mqtt_url or mqtt.url
        if url != "none":
            username, password = mqtt.username, mqtt.password.reveal() if mqtt.password else None
            if url == "embedded":
                # The server's login lives in this process only: never in a file, a log or argv.
                password = secrets.token_urlsafe(32)
                username = SERVER_USER
                self.broker = EmbeddedBroker.for_config(self.config, Secret(password))
                await self.broker.start()
                url = self.broker.url
            self.mqtt_url = url
            topics = self.service.topics
            settings = LinkSettings(
                url=url, client_id=mqtt.client_id, username=username, password=password, keepalive=mqtt.keepalive,
                protocol=mqtt.protocol,
                ca=str(mqtt.tls.ca) if mqtt.tls and mqtt.tls.ca else None,
                cert=str(mqtt.tls.cert) if mqtt.tls and mqtt.tls.cert else None,
                key=str(mqtt.tls.key) if mqtt.tls and mqtt.tls.key else None,
                will=(topics.server_availability, b"offline"), online=b"online")
            subs = [Subscription(t) for t in self.service.subscriptions()]
            guarded = topics.guarded()
            if self.config.homeassistant.enabled:
                subs.append(Subscription(self.config.homeassistant.status_topic))
                # Our discovery configs, to notice (and undo) one written by someone else.
                guarded.append(f"{self.config.homeassistant.discovery_prefix}/update/+/config")
                guarded.append(hass.availability_topic(topics, "+"))  # and the entities' availability
            # The guard needs what others write there, not every publish of ours coming back:
            # at QoS 0 an echo costs no acknowledgement, and on MQTT 5 the broker sends none.
            # A message missed while the connection drops is retained and comes again on resubscribe.
            subs += [Subscription(t, qos=0, echo=False) for t in guarded]
            self.link = MqttLink(settings, subs, on_message=self.service.handle_message,
                                 on_connected=self.service.on_connected,
                                 on_disconnected=self._mqtt_lost, dispatch=loop.call_soon_threadsafe)
            self.service.attach(self.link)
            self.link.start()
            # One connection without credentials, off the loop: warns if the broker let it in.
            self._probe = loop.run_in_executor(None, warn_if_anonymous, settings)
        self.service.tick()  # read the store (announcing waits for the broker's retained state)
        tls = self.config.server.tls
        ssl_ctx = None
        if tls is not None and tls.cert is not None:
            ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_ctx.load_cert_chain(str(tls.cert), str(tls.key) if tls.key else None)
        host = self.overrides.host or self.config.server.host
        port = self.config.server.port if self.overrides.port is None else self.overrides.port
        self._http, sockets = start_http(self.service, make_app(self.service), host, port, ssl_ctx)
        self.port = sockets[0].getsockname()[1]
        self._ticker = asyncio.create_task(self._tick_forever())

    def _mqtt_lost(self, _reason: str) -> None:
        self.service.on_disconnected()

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                self.service.tick()
            except Exception:  # the clock must keep going: log and carry on
                log.exception("periodic work failed")

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self._http is not None:
            self._http.stop()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._http.close_all_connections(), 2)
        if self._probe is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._probe, 10)  # bounded by its own 5 s time-out
        if self.link is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.link.stop)
        if self.broker is not None:
            await self.broker.stop()
        self.service.close()
