"""Who may log in to the embedded broker, and what each login may read and write.

Pure rules, no broker in sight: ``broker.py`` asks these questions from amqtt's plugin hooks. The
grants are the ACL of docs/mosquitto.md, spelled out per role:

- the server (a random per-process password only the runner knows) reads and writes everything
  under the topic prefix and the discovery prefix;
- Home Assistant (``homeassistant``, only with ``mqtt.embedded_homeassistant_password``) reads
  and writes discovery, reads ``<prefix>/+/state``, ``<prefix>/+/entity``, ``<prefix>/+/availability``
  and ``<prefix>/server/rollout/#`` (its rollout sensors) and writes
  ``<prefix>/+/install``;
- a device (user name = device id, its configured password, plain or hashed) reads its own
  update topic and writes its own status and availability; nothing else;
- a Tasmota device (``kind: tasmota``) instead reads its own ``cmnd/<topic>/#`` and the group
  topic ``cmnd/tasmotas/#``, and writes its own ``stat/<topic>/#``, ``tele/<topic>/#`` and
  ``tasmota/discovery/<MAC>/#`` (any MAC when the config gives none); the server reads
  ``stat/#``, ``tele/#`` and ``tasmota/discovery/#`` and writes ``cmnd/#`` (and a custom
  FullTopic's equivalents).

Nobody gets in without a user name, and ``$`` topics (``$SYS``) are nobody's.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from tinyota_mqtt.core.passwords import Password, Secret, Verifier

# Device ids are [A-Za-z0-9_-]+, so a user name with a dot can never be taken by a device.
SERVER_USER = "tinyota.server"
HOMEASSISTANT_USER = "homeassistant"


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` (a concrete name) matches ``topic_filter`` (MQTT 3.1.1 section 4.7).

    ``+`` is exactly one level, ``#`` the rest including the parent (``a/#`` matches ``a``), and a
    filter that starts with a wildcard never matches a ``$`` topic (section 4.7.2).
    """
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    want, have = topic_filter.split("/"), topic.split("/")
    for index, level in enumerate(want):
        if level == "#":
            return True
        if index >= len(have) or level not in ("+", have[index]):
            return False
    return len(want) == len(have)


def filter_within(topic_filter: str, rule: str) -> bool:
    """Whether every topic ``topic_filter`` can match is matched by ``rule``.

    A subscription is granted only when it cannot reach past what the rule allows: under
    ``tinyota/+/state``, ``tinyota/+/state`` and ``tinyota/kitchen-1/state`` are fine,
    ``tinyota/#`` or ``tinyota/+/+`` are not.
    """
    want, allowed = topic_filter.split("/"), rule.split("/")
    for index, level in enumerate(allowed):
        if level == "#":
            return True
        if index >= len(want) or want[index] == "#":
            return False
        if level != "+" and want[index] != level:
            return False
    return len(want) == len(allowed)


@dataclass(frozen=True)
class Grants:
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()


@dataclass(frozen=True)
class TasmotaLogin:
    """A Tasmota device's topics, as its FullTopic lays them out (core/tasmota.Topics)."""

    command: str  # e.g. "cmnd/plug-1/"
    stat: str
    tele: str
    group: str  # the group topic's command base, "cmnd/tasmotas/"
    mac: str | None = None

    def grants(self) -> Grants:
        discovery = f"tasmota/discovery/{self.mac or '+'}/#"
        return Grants(read=(self.command + "#", self.group + "#"),
                      write=(self.stat + "#", self.tele + "#", discovery))


class Access:
    """The embedded broker's accounts and ACL, built from the config."""

    def __init__(self, *, prefix: str, discovery_prefix: str, status_topic: str,
                 devices: Mapping[str, Password], server_password: Secret, server_client_id: str,
                 homeassistant: Password | None = None, tasmota: Mapping[str, TasmotaLogin] | None = None) -> None:
        self._prefix = prefix
        self._server_password = server_password
        accounts = dict(devices)
        if homeassistant is not None:
            accounts[HOMEASSISTANT_USER] = homeassistant
        self._verifier = Verifier(accounts)
        self._devices = frozenset(devices)
        self._homeassistant = homeassistant is not None
        self._tasmota = dict(tasmota or {})
        # Tasmota's topics have no prefix of ours, and a custom FullTopic puts them anywhere; the
        # server's rights there are docs/mosquitto.md's, plus whatever each configured layout needs.
        layouts = [rule for t in self._tasmota.values() for rule in (t.stat + "#", t.tele + "#")
                   if not rule.startswith(("stat/", "tele/"))]
        commands = [t.command + "#" for t in self._tasmota.values() if not t.command.startswith("cmnd/")]
        self._server = Grants(
            read=(f"{prefix}/#", f"{discovery_prefix}/#", status_topic, "stat/#", "tele/#", "tasmota/discovery/#",
                  *layouts),
            write=(f"{prefix}/#", f"{discovery_prefix}/#", "cmnd/#", *commands))
        self._hass = Grants(
            # +/entity: each update entity's availability, which the server decides (core/hass.py)
            read=(f"{discovery_prefix}/#", f"{prefix}/+/state", f"{prefix}/+/entity", f"{prefix}/+/availability",
                  f"{prefix}/server/rollout/#", status_topic),  # rollout states: its rollout sensors
            write=(f"{discovery_prefix}/#", f"{prefix}/+/install", status_topic))
        # A client id names a session: whoever connects with it takes the session over and, with
        # clean_session, wipes its subscriptions. The server's and each device's own id are
        # therefore kept for their owners, so a device cannot knock the server off the broker.
        self._client_ids = {device: device for device in devices} | {server_client_id: SERVER_USER}

    # -- logging in ------------------------------------------------------------------------------

    def refusal(self, username: str | None, client_id: str | None, will_topic: str | None) -> str | None:
        """Why a CONNECT is refused before its password is looked at, or None to check it."""
        if username is None:
            return "no user name (anonymous clients are not let in)"
        if not self._known(username):
            return f"unknown user {username!r}"
        owner = self._client_ids.get(client_id or "")
        if owner is not None and owner != username:
            return f"client id {client_id!r} belongs to another account"
        if will_topic is not None and not self.may_publish(username, will_topic):
            return f"its last will topic {will_topic!r} is not one it may write"
        return None

    def password_is_cheap(self, username: str, password: str) -> bool:
        """Whether ``password_ok`` answers without a KDF (and may run on the event loop)."""
        return username == SERVER_USER or self._verifier.is_cheap(username, password)

    def password_ok(self, username: str, password: str) -> bool:
        """Constant-time check; for a hashed password this may run the full KDF."""
        if username == SERVER_USER:
            return hmac.compare_digest(password.encode("utf-8"), self._server_password.reveal().encode("utf-8"))
        return self._verifier.check(username, password)

    def _known(self, username: str) -> bool:
        return (username == SERVER_USER or username in self._devices
                or (self._homeassistant and username == HOMEASSISTANT_USER))

    # -- topics ----------------------------------------------------------------------------------

    def grants(self, username: str | None) -> Grants:
        if username == SERVER_USER:
            return self._server
        if username == HOMEASSISTANT_USER and self._homeassistant:
            return self._hass
        if username in self._tasmota:
            return self._tasmota[username].grants()
        if username in self._devices:
            own = f"{self._prefix}/{username}"
            return Grants(read=(f"{own}/update",), write=(f"{own}/status", f"{own}/availability"))
        return Grants()

    def may_publish(self, username: str | None, topic: str) -> bool:
        if topic.startswith("$") or "+" in topic or "#" in topic:
            return False
        return any(topic_matches(rule, topic) for rule in self.grants(username).write)

    def may_receive(self, username: str | None, topic: str) -> bool:
        if topic.startswith("$"):
            return False
        return any(topic_matches(rule, topic) for rule in self.grants(username).read)

    def may_subscribe(self, username: str | None, topic_filter: str) -> bool:
        if topic_filter.startswith("$"):
            return False
        return any(filter_within(topic_filter, rule) for rule in self.grants(username).read)
