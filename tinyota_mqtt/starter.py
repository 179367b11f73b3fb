"""``tinyota init``: a starter config.yaml for the user's own network, from flags or questions.

Passwords are generated (or typed at a hidden prompt) and go into the file only: never to the
terminal, a log or the command line.
"""

from __future__ import annotations

import argparse
import getpass
import json
import re
import secrets
import socket
import sys
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from tinyota_mqtt.config.model import ID_PATTERN, PLATFORMS
from tinyota_mqtt.errors import TinyOTAError

_ID = re.compile(ID_PATTERN)


@dataclass(frozen=True)
class Answers:
    lan_address: str
    port: int
    broker: str
    device: str
    platform: str
    image: str
    group: str
    admin_password: str
    device_password: str


def detect_address() -> str:
    """The address this machine would use to reach other hosts; 127.0.0.1 if it has none.

    Connecting a UDP socket sends nothing: the kernel only picks the route and source address.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1 (RFC 5737): never a real host
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def _ask(question: str, default: str) -> str:
    print(f"{question} [{default}]: ", end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline().strip()
    return answer or default


def _password(ask: bool, whose: str) -> str:
    if ask:
        typed = getpass.getpass(f"{whose} password (Enter generates one): ")
        if typed:
            return typed
    return secrets.token_urlsafe(18)


def _check_id(value: str, what: str) -> str:
    if not _ID.fullmatch(value):
        raise TinyOTAError(f"{what} {value!r} may hold only letters, digits, '-' and '_'")
    return value


def _check_broker(value: str) -> str:
    if value == "embedded":
        return value
    parts = urlsplit(value)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise TinyOTAError(f"broker {value!r} is not a broker URL",
                           "write mqtt://HOST:1883, mqtts://HOST:8883 or 'embedded'")
    if parts.username or parts.password:
        raise TinyOTAError("put the broker's user name and password in the config, not in its URL",
                           "URLs end up in logs; the file says where they go")
    return value


def gather(args: argparse.Namespace, ask: bool) -> Answers:
    def value(given: str | None, question: str, default: str) -> str:
        if given is not None:
            return given
        return _ask(question, default) if ask else default

    lan = value(args.lan_address, "address of this machine that devices reach", detect_address())
    broker = _check_broker(value(args.broker, "your MQTT broker (or 'embedded')", "mqtt://127.0.0.1:1883"))
    device = _check_id(value(args.device, "the first device's id", "esp-1"), "device id")
    platform = value(args.platform, f"its chip ({', '.join(PLATFORMS)})", "esp8266")
    if platform not in PLATFORMS:
        raise TinyOTAError(f"platform {platform!r} is not one of {', '.join(PLATFORMS)}")
    image = _check_id(value(args.image, "its firmware image's name", "firmware"), "image name")
    group = _check_id(value(args.group, "its group's name", "lab"), "group name")
    if not lan or any(c in lan for c in "/ ") or not 0 < args.port < 65536:
        raise TinyOTAError(f"{lan}:{args.port} is not an address and port devices can reach")
    return Answers(lan, args.port, broker, device, platform, image, group,
                   _password(ask, "admin"), _password(ask, device))


def _yaml(text: str) -> str:
    """A YAML string for any text: JSON's quoting is valid YAML; '$' is doubled for the loader."""
    return json.dumps(text.replace("$", "$$"))


def render(a: Answers) -> str:
    host = f"[{a.lan_address}]" if ":" in a.lan_address else a.lan_address
    if a.broker == "embedded":
        mqtt = ("  # A broker inside the server: fine to start with, mosquitto for more (docs/mosquitto.md).\n"
                "  # Needs pip install 'tinyota-mqtt[embedded]'. Devices connect to mqtt://"
                f"{host}:1883.\n  url: embedded\n  embedded_host: 0.0.0.0\n  embedded_port: 1883\n")
    else:
        mqtt = ("  # The server's broker. Devices need one they can reach too: with 127.0.0.1 here,\n"
                f"  # give them mqtt://{host}:1883. Broker accounts: docs/mosquitto.md.\n"
                f"  url: {_yaml(a.broker)}\n"
                "  # username: tinyota\n  # password: ${MQTT_PASSWORD}\n")
    return f"""\
# TinyOTA-MQTT config written by `tinyota init` on {time.strftime("%Y-%m-%d")}. Every key: docs/config.md.
# It holds passwords: keep it readable only by you and out of git.

server:
  host: 0.0.0.0                # listen on every address, so devices on the network reach it
  port: {a.port}
  public_url: http://{host}:{a.port}   # what devices are told to download from
  store: var/firmware
  state: var/tinyota.sqlite
  admin:
    username: admin
    password: {_yaml(a.admin_password)}

mqtt:
{mqtt}
homeassistant:
  enabled: true

images:
  {a.image}:
    platform: {a.platform}

groups:
  {a.group}:
    image: {a.image}
    auto_update: false         # updates start when you say so: tinyota install --group {a.group}
    attempt_timeout: 10m

devices:
  {a.device}:
    group: {a.group}
    # The device logs in with its id and this password (esp_client/README.md).
    password: {_yaml(a.device_password)}
"""
