"""The embedded broker behind ``mqtt: {url: embedded}``: the quickstart's, not production's.

It runs amqtt on the server's own event loop, on loopback by default, so a first run needs
nothing installed but this package. It is not anonymous: every client logs in (the server with a
random per-process password, each device with its own) and is held to the ACL of
docs/mosquitto.md (rules in ``access.py``). Real deployments still point at mosquitto.

amqtt 0.12.1 needs fixes on top, made in a subclass (``amqtt_broker.py``), never in the installed
package:

- it looks up (and, for a clean session, deletes) the session named by a CONNECT's client id
  *before* the client is authenticated, so a refused client could wipe the server's
  subscriptions; we authenticate first and refuse with CONNACK 5 before touching any session;
- on every connect it sends the new client the retained messages matching *every* client's
  subscriptions, not its own (against MQTT 3.1.1 section 3.3.1.3): a device got every other
  device's announcement, and a fleet's connect storm grew as N squared. We send a client only
  what matches its own filters and what it may read;
- a client's last will was published without any ACL check; we refuse a CONNECT whose will topic
  the user may not write (as mosquitto does);
- a second connection with a client id (clean session) left the first one running beside it; we
  cut the first off (MQTT 3.1.1 section 3.1.4).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from tinyota_mqtt.config.model import Config
from tinyota_mqtt.core import tasmota
from tinyota_mqtt.core.passwords import Secret
from tinyota_mqtt.errors import BrokerError
from tinyota_mqtt.mqtt.access import Access, TasmotaLogin

log = logging.getLogger("tinyota.mqtt")

# A hashed password costs ~0.3 s of CPU: never more than this many at once, and off the loop.
KDF_IN_FLIGHT = 2
REFUSALS_REMEMBERED = 256  # distinct refusals logged; past that, refusals go unlogged


class Refusals:
    """Logs each distinct refusal once: a device retrying a wrong password every second, or
    someone guessing, must not flood the log. Never sees a password."""

    def __init__(self) -> None:
        self._seen: set[tuple[str | None, str]] = set()

    def note(self, username: str | None, address: str | None, why: str) -> None:
        key = (username, why)
        if key in self._seen or len(self._seen) >= REFUSALS_REMEMBERED:
            return
        self._seen.add(key)
        # An anonymous attempt is what the server's own start-up probe makes: not worth an INFO.
        level = logging.DEBUG if username is None else logging.INFO
        log.log(level, "embedded broker refused a client from %s: %s", address or "?", why)


@dataclass
class Gate:
    """Who gets in: the broker's accounts and ACL, the KDF bound, and the refusal log."""

    access: Access
    refusals: Refusals
    kdf: asyncio.Semaphore

    async def admit(self, session: Any) -> bool:
        username: str | None = session.username
        will = session.will_topic if session.will_flag else None
        why = self.access.refusal(username, session.client_id, will)
        if why is None and username is not None:
            password = session.password or ""
            if self.access.password_is_cheap(username, password):
                ok = self.access.password_ok(username, password)
            else:
                async with self.kdf:
                    loop = asyncio.get_running_loop()
                    ok = await loop.run_in_executor(None, self.access.password_ok, username, password)
            why = None if ok else f"wrong password for {username!r}"
        if why is not None:
            self.refusals.note(username, session.remote_address, why)
        return why is None


def _tasmota_logins(config: Config) -> dict[str, TasmotaLogin]:
    logins = {}
    for device in config.devices.values():
        if device.kind == "tasmota" and device.password is not None:
            full = device.full_topic or tasmota.DEFAULT_FULL_TOPIC
            own, group = tasmota.Topics(device.tasmota_topic, full), tasmota.Topics(tasmota.GROUP_TOPIC, full)
            logins[device.id] = TasmotaLogin(own.command(""), own.stat(""), own.tele(""), group.command(""),
                                             device.mac)
    return logins


class EmbeddedBroker:
    def __init__(self, host: str, port: int, access: Access) -> None:
        self.host, self.port = host, port
        self.access = access
        self.refusals = Refusals()
        self._broker: Any = None

    @classmethod
    def for_config(cls, config: Config, server_password: Secret) -> EmbeddedBroker:
        """The broker of ``mqtt.url: embedded``; the server logs in as SERVER_USER with
        ``server_password``, each configured device with its own password."""
        mqtt, hass = config.mqtt, config.homeassistant
        access = Access(
            prefix=mqtt.prefix, discovery_prefix=hass.discovery_prefix, status_topic=hass.status_topic,
            devices={d.id: d.password for d in config.devices.values() if d.password is not None},
            server_password=server_password, server_client_id=mqtt.client_id,
            homeassistant=mqtt.embedded_homeassistant_password, tasmota=_tasmota_logins(config))
        return cls(mqtt.embedded_host, mqtt.embedded_port, access)

    async def start(self) -> None:
        try:
            from tinyota_mqtt.mqtt.amqtt_broker import GatedBroker
        except ImportError:
            raise BrokerError(
                "the embedded broker (mqtt.url: embedded, and tinyota demo) is not installed",
                "pip install 'tinyota-mqtt[embedded]' (./dev does), or point mqtt.url at your broker",
            ) from None
        for name in ("amqtt", "transitions"):
            # Its INFO is a line per packet, and it warns about harmless PUBACK races at shutdown.
            logging.getLogger(name).setLevel(logging.ERROR)
        gate = Gate(self.access, self.refusals, asyncio.Semaphore(KDF_IN_FLIGHT))
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            # No plugins: none of amqtt's defaults (anonymous login, $SYS, packet logging); the
            # gate answers its authentication and topic checks (amqtt_broker.py).
            "plugins": {},
        }
        self._broker = GatedBroker(config, gate)
        try:
            await self._broker.start()
        except Exception as exc:
            raise BrokerError(f"the embedded broker cannot listen on {self.host}:{self.port}: {exc}",
                              "another broker may already use that port: set mqtt.embedded_port") from None
        log.info("embedded MQTT broker listening on mqtt://%s:%d (every client logs in; "
                 "use mosquitto for real devices)", self.host, self.port)

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    async def stop(self) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
            self._broker = None
