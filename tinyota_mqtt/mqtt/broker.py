"""The embedded broker behind ``mqtt: {url: embedded}``: the quickstart's, not production's.

It runs amqtt on the server's own event loop, anonymous, on loopback by default, so a first run
needs nothing installed but this package. Real deployments point at mosquitto (docs/mosquitto.md).
"""

from __future__ import annotations

import logging
from typing import Any

from tinyota_mqtt.errors import BrokerError

log = logging.getLogger("tinyota.mqtt")


class EmbeddedBroker:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._broker: Any = None

    async def start(self) -> None:
        try:
            from amqtt.broker import Broker
        except ImportError:
            raise BrokerError(
                "mqtt.url is 'embedded' but the embedded broker is not installed",
                "pip install 'tinyota-mqtt[embedded]', or point mqtt.url at your mosquitto",
            ) from None
        for name in ("amqtt", "transitions"):
            # Its INFO is a line per packet, and it warns about harmless PUBACK races at shutdown.
            logging.getLogger(name).setLevel(logging.ERROR)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }
        self._broker = Broker(config)
        try:
            await self._broker.start()
        except Exception as exc:
            raise BrokerError(f"the embedded broker cannot listen on {self.host}:{self.port}: {exc}",
                              "another broker may already use that port: set mqtt.embedded_port") from None
        log.info("embedded MQTT broker listening on mqtt://%s:%d (for trying things out; "
                 "use mosquitto for real devices)", self.host, self.port)

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    async def stop(self) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
            self._broker = None
