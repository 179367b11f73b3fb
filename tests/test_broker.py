"""The embedded broker (mqtt.url: embedded) against real paho clients and a real server.

Every client logs in, every topic is held to docs/mosquitto.md's ACL, and a subscriber gets the
retained messages of its own filters only (amqtt 0.12.1 sent those of everybody's filters). The
start-up warning about brokers that let anonymous clients in is checked here too, against real
mosquitto with and without users, and against the embedded broker.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BASE_CONFIG, Mosquitto, Probe, ServerThread, free_port, release, wait_until, write_config
from tinyota_mqtt.core.passwords import Secret, hash_password
from tinyota_mqtt.mqtt.access import SERVER_USER, Access, filter_within, topic_matches
from tinyota_mqtt.mqtt.client import LinkSettings, anonymous_login_accepted

HASS_PASSWORD = "ha-secret"
SENSOR_HASH = hash_password("pw-sensor-1", iterations=1000)


def embedded_config(directory: Path, prefix: str, *, hass: bool = True) -> Path:
    port = free_port()
    mqtt = f"embedded\n  embedded_port: {port}"
    if hass:
        mqtt += f"\n  embedded_homeassistant_password: {HASS_PASSWORD}"
    text = BASE_CONFIG.replace("password: pw-sensor-1", f"password: '{SENSOR_HASH}'")
    return write_config(directory, mqtt=mqtt, prefix=prefix, text=text)


class Embedded:
    """A server with its embedded broker, and paho clients that log in to it."""

    def __init__(self, server: ServerThread, probes: Any) -> None:
        self.server = server
        self.pre = server.config.mqtt.prefix
        self.ha = server.config.homeassistant.discovery_prefix
        self.url = server.server.mqtt_url
        self._probes = probes

    def login(self, user: str | None = None, password: str | None = None, **kw: Any) -> Probe:
        return self._probes(self.url, username=user, password=password, **kw)  # type: ignore[no-any-return]

    def device(self, device: str, **kw: Any) -> Probe:
        probe = self.login(device, f"pw-{device}", client_id=kw.pop("client_id", device), **kw)
        assert probe.refused is None, probe.refused
        return probe

    def hass(self) -> Probe:
        probe = self.login("homeassistant", HASS_PASSWORD)
        assert probe.refused is None, probe.refused
        return probe

    def settle(self, device: str, marker: str) -> None:
        """Publish an allowed status and wait until the server has it.

        The broker handles one client's packets in order, so whatever that client published
        before has been forwarded or dropped by then: no waiting on the absence of a message.
        """
        probe = self.device(device, client_id=f"{device}-marker")
        probe.publish(f"{self.pre}/{device}/status", json.dumps({"state": "idle", "version": marker}), retain=True)
        wait_until(lambda: self.server.view(device)["installed"] == marker, 10, f"{device} reporting {marker}")


@pytest.fixture
def embedded(tmp_path: Path, prefix: str, servers: Any, probes: Any) -> Embedded:
    server = servers(embedded_config(tmp_path, prefix))
    wait_until(lambda: server.service.ready, 30, "the server to log in to its embedded broker")
    return Embedded(server, probes)


def subscribe(probe: Probe, topic_filter: str) -> bool:
    """Subscribe and tell whether the broker granted it (SUBACK 0x80 is a refusal)."""
    codes: list[Any] = []
    done = threading.Event()

    def on_subscribe(_c: Any, _u: Any, _mid: Any, reasons: Any, _p: Any) -> None:
        codes.extend(reasons)
        done.set()

    probe.client.on_subscribe = on_subscribe
    probe.client.subscribe(topic_filter, 1)
    assert done.wait(10), f"no SUBACK for {topic_filter}"
    return not codes[0].is_failure


# -- logging in ------------------------------------------------------------------------------------

def test_anonymous_unknown_and_wrong_passwords_are_refused(embedded: Embedded) -> None:
    refused = [
        embedded.login(),  # anonymous
        embedded.login("kitchen-1", "wrong"),
        embedded.login("kitchen-1"),  # a user name and no password
        embedded.login("sensor-1", "wrong"),  # the hashed entry
        embedded.login("sensor-1", SENSOR_HASH),  # the hash itself is not the password
        embedded.login("nobody", "pw-kitchen-1"),
        embedded.login(SERVER_USER, "guess"),
        embedded.login("homeassistant", "guess"),
    ]
    for probe in refused:
        assert probe.refused is not None and not probe.connected.is_set()
        assert str(probe.refused) == "Not authorized"
    for device in ("kitchen-1", "sensor-1"):  # plain and PBKDF2-hashed entries alike
        assert embedded.device(device).connected.is_set()
    assert embedded.hass().connected.is_set()


def test_refusals_are_logged_once_without_the_password(embedded: Embedded, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tinyota.mqtt")
    for _ in range(3):
        assert embedded.login("kitchen-2", "s3cret-guess").refused is not None
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert lines == ["embedded broker refused a client from 127.0.0.1: wrong password for 'kitchen-2'"]
    assert "s3cret-guess" not in caplog.text


def test_a_device_cannot_take_the_servers_client_id_or_forge_a_will(embedded: Embedded) -> None:
    pre = embedded.pre
    # With the server's client id, a clean session would wipe the server's subscriptions.
    assert embedded.login("kitchen-1", "pw-kitchen-1", client_id=embedded.server.config.mqtt.client_id).refused
    assert embedded.login("kitchen-1", "pw-kitchen-1", client_id="kitchen-2").refused
    # Its last will is published by the broker on its behalf: it must be a topic it may write.
    assert embedded.login("kitchen-1", "pw-kitchen-1", will=(f"{pre}/server/availability", b"offline")).refused
    assert embedded.login("kitchen-1", "pw-kitchen-1", will=(f"{pre}/kitchen-2/availability", b"offline")).refused
    assert embedded.device("kitchen-1", will=(f"{pre}/kitchen-1/availability", b"offline")).connected.is_set()
    # The server never lost its session: it still hears devices.
    embedded.settle("kitchen-2", "9.9.9")
    assert embedded.server.service.mqtt_connected


# -- the ACL ---------------------------------------------------------------------------------------

def test_a_device_reads_only_its_own_announcement(embedded: Embedded) -> None:
    pre = embedded.pre
    server = embedded.server
    release(server.config, "kitchen", "1.0.0", 30_000)
    server.call(server.service.tick)
    k1 = embedded.device("kitchen-1")
    for forbidden in (f"{pre}/kitchen-2/update", f"{pre}/+/update", f"{pre}/#", "#", f"{pre}/kitchen-1/+",
                      f"{pre}/kitchen-2/status", f"{embedded.ha}/#", "$SYS/#"):
        assert not subscribe(k1, forbidden), forbidden
    assert subscribe(k1, f"{pre}/kitchen-1/update")
    k1.wait_for(f"{pre}/kitchen-1/update")
    k2 = embedded.device("kitchen-2")
    assert subscribe(k2, f"{pre}/kitchen-2/update")
    k2.wait_for(f"{pre}/kitchen-2/update")
    assert {m.topic for m in k1.messages} == {f"{pre}/kitchen-1/update"}


def test_a_device_cannot_publish_for_another_device_or_the_server(embedded: Embedded) -> None:
    pre, ha = embedded.pre, embedded.ha
    server = embedded.server
    hass = embedded.hass()
    for topic in (f"{pre}/+/state", f"{pre}/+/availability", f"{ha}/#"):
        assert subscribe(hass, topic)
    hass.wait_for(f"{pre}/server/availability", lambda m: m.payload == b"online")
    hass.wait_for(f"{pre}/kitchen-2/state")
    hass.wait_for(f"{ha}/update/tinyota_kitchen-2/config")
    before = len(hass.messages)
    attacker = embedded.device("kitchen-1")
    forged = json.dumps({"state": "idle", "version": "6.6.6"})
    attacker.publish(f"{pre}/kitchen-2/status", forged, retain=True)
    attacker.publish(f"{pre}/kitchen-2/availability", "offline", retain=True)
    attacker.publish(f"{pre}/server/availability", "offline", retain=True)
    attacker.publish(f"{pre}/kitchen-2/state", json.dumps({"installed_version": "6.6.6"}), retain=True)
    attacker.publish(f"{pre}/kitchen-2/update", json.dumps({"version": "6.6.6", "url": "http://evil/"}), retain=True)
    attacker.publish(f"{pre}/kitchen-2/install", "install")
    attacker.publish(f"{ha}/update/tinyota_kitchen-2/config", "{}", retain=True)
    # Same client, same order: once its own status is through, every forgery above was handled.
    attacker.publish(f"{pre}/kitchen-1/status", json.dumps({"state": "idle", "version": "1.2.3"}), retain=True)
    wait_until(lambda: server.view("kitchen-1")["installed"] == "1.2.3", 10, "kitchen-1's own status")
    assert server.view("kitchen-2")["installed"] is None
    assert server.view("kitchen-2")["attempt"] is None  # the forged install was not let through
    # Home Assistant saw none of it, and a late subscriber finds the server's own retained values.
    assert [m.topic for m in hass.messages[before:] if b"6.6.6" in m.payload or m.payload == b"offline"] == []
    late = embedded.hass()
    assert subscribe(late, f"{pre}/+/availability")
    late.wait_for(f"{pre}/server/availability")
    assert late.last(f"{pre}/server/availability").payload == b"online"  # type: ignore[union-attr]
    k2 = embedded.device("kitchen-2")
    assert subscribe(k2, f"{pre}/kitchen-2/update")
    embedded.settle("kitchen-2", "1.0.1")
    assert all(b"evil" not in m.payload for m in k2.received(f"{pre}/kitchen-2/update"))


def test_home_assistant_installs_and_the_server_does_all_it_needs(embedded: Embedded) -> None:
    pre, ha = embedded.pre, embedded.ha
    server = embedded.server
    release(server.config, "sensor", "2.0.0", 30_000)
    server.call(server.service.tick)
    sensor = embedded.device("sensor-1")  # the hashed entry
    sensor.publish(f"{pre}/sensor-1/availability", "online", retain=True)
    sensor.publish(f"{pre}/sensor-1/status", json.dumps({"state": "idle", "version": "1.0.0"}), retain=True)
    wait_until(lambda: server.view("sensor-1")["installed"] == "1.0.0", 10, "sensor-1 reporting")
    hass = embedded.hass()
    assert not subscribe(hass, f"{pre}/+/update") and not subscribe(hass, f"{pre}/#")
    assert subscribe(hass, f"{ha}/update/+/config") and subscribe(hass, f"{pre}/sensor-1/state")
    hass.wait_for(f"{ha}/update/tinyota_sensor-1/config")
    hass.wait_for(f"{pre}/sensor-1/state", lambda m: json.loads(m.payload)["installed_version"] == "1.0.0")
    assert subscribe(sensor, f"{pre}/sensor-1/update")
    hass.publish(f"{pre}/sensor-1/install", "install")  # the Install button
    msg = sensor.wait_for(f"{pre}/sensor-1/update", lambda m: bool(m.payload))
    assert json.loads(msg.payload)["version"] == "2.0.0"
    sensor.publish(f"{pre}/sensor-1/status", json.dumps({"state": "idle", "version": "2.0.0"}), retain=True)
    wait_until(lambda: (server.view("sensor-1")["attempt"] or {}).get("state") == "succeeded", 10, "confirmation")


# -- retained messages -----------------------------------------------------------------------------

def test_a_subscriber_gets_the_retained_messages_of_its_own_filters_only(embedded: Embedded) -> None:
    """amqtt 0.12.1 sent a new client the retained messages matching anyone's subscriptions."""
    pre, ha = embedded.pre, embedded.ha
    server = embedded.server
    release(server.config, "kitchen", "1.0.0", 30_000)
    server.call(server.service.tick)
    watcher = embedded.device("kitchen-1")  # holds a filter of its own for the bug to leak
    assert subscribe(watcher, f"{pre}/kitchen-1/update")
    watcher.wait_for(f"{pre}/kitchen-1/update")
    for device in ("kitchen-1", "kitchen-2", "sensor-1", "loner"):
        embedded.settle(device, "1.0.0")  # retained statuses, which the server's filters match
    hass = embedded.hass()
    # Connected and subscribed to nothing yet: a marker round trip shows nothing arrived.
    assert subscribe(hass, f"{ha}/update/tinyota_loner/config")
    hass.wait_for(f"{ha}/update/tinyota_loner/config")
    assert {m.topic for m in hass.messages} == {f"{ha}/update/tinyota_loner/config"}
    # `+`: one level, every device's state and nothing else.
    assert subscribe(hass, f"{pre}/+/state")
    wait_until(lambda: len({m.topic for m in hass.messages if m.topic.endswith("/state")}) == 4, 10, "4 states")
    # `#`: everything under the discovery prefix.
    assert subscribe(hass, f"{ha}/#")
    wait_until(lambda: len({m.topic for m in hass.messages if m.topic.startswith(f"{ha}/")}) == 4, 10, "discovery")
    k2 = embedded.device("kitchen-2")
    assert subscribe(k2, f"{pre}/kitchen-2/update")  # exact topic
    k2.wait_for(f"{pre}/kitchen-2/update")
    embedded.settle("kitchen-2", "1.0.2")
    assert {m.topic for m in k2.messages} == {f"{pre}/kitchen-2/update"}
    assert len(k2.messages) == 1 and k2.messages[0].retain
    topics = {m.topic for m in hass.messages}
    assert topics == ({f"{pre}/{d}/state" for d in ("kitchen-1", "kitchen-2", "sensor-1", "loner")}
                      | {f"{ha}/update/tinyota_{d}/config" for d in ("kitchen-1", "kitchen-2", "sensor-1", "loner")})


@pytest.mark.parametrize(("topic_filter", "topic", "matches"), [
    ("a/b", "a/b", True), ("a/b", "a/b/c", False), ("a/b", "a", False),
    ("a/+", "a/b", True), ("a/+", "a/b/c", False), ("a/+", "a", False), ("+/+", "/b", True),
    ("+", "a", True), ("+", "a/b", False), ("a/+/c", "a/b/c", True), ("a/+/c", "a/b/d", False),
    ("a/#", "a", True), ("a/#", "a/b/c", True), ("a/#", "ab", False), ("#", "a/b", True),
    ("#", "$SYS/load", False), ("+/load", "$SYS/load", False), ("$SYS/#", "$SYS/load", True),
])
def test_wildcards_follow_mqtt_3_1_1_section_4_7(topic_filter: str, topic: str, matches: bool) -> None:
    assert topic_matches(topic_filter, topic) is matches


@pytest.mark.parametrize(("topic_filter", "rule", "within"), [
    ("t/k1/update", "t/k1/update", True), ("t/+/update", "t/k1/update", False),
    ("t/+/state", "t/+/state", True), ("t/k1/state", "t/+/state", True), ("t/#", "t/+/state", False),
    ("t/+/+", "t/+/state", False), ("t", "t/#", True), ("t/#", "t/#", True), ("t/a/#", "t/#", True),
    ("#", "t/#", False), ("u/a", "t/#", False),
])
def test_a_subscription_may_not_reach_past_its_rule(topic_filter: str, rule: str, within: bool) -> None:
    assert filter_within(topic_filter, rule) is within


def test_access_rules_match_the_documented_acl() -> None:
    from tinyota_mqtt.core.passwords import Password

    access = Access(prefix="tinyota", discovery_prefix="homeassistant", status_topic="homeassistant/status",
                    devices={"kitchen-1": Password.parse("x")}, server_password=Secret("s"),
                    server_client_id="tinyota-server", homeassistant=Password.parse("h"))
    assert access.may_subscribe("kitchen-1", "tinyota/kitchen-1/update")
    assert not access.may_publish("kitchen-1", "tinyota/kitchen-1/update")
    assert access.may_publish("kitchen-1", "tinyota/kitchen-1/status")
    assert not access.may_publish("kitchen-1", "tinyota/kitchen-1/install")
    assert access.may_publish("homeassistant", "tinyota/kitchen-1/install")
    assert not access.may_receive("homeassistant", "tinyota/kitchen-1/status")
    assert access.may_subscribe(SERVER_USER, "tinyota/+/status") and access.may_publish(SERVER_USER, "homeassistant/x")
    assert not access.may_publish(SERVER_USER, "elsewhere/x") and not access.may_publish(None, "tinyota/x")
    assert access.refusal("kitchen-1", "tinyota-server", None) is not None


def _documented_acl() -> dict[str, list[tuple[str, str]]]:
    """docs/mosquitto.md's ACL block as {user or '%u': [(access, topic)]}, in mosquitto's terms."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "mosquitto.md").read_text()
    block = re.search(r"```\n(# TinyOTA ACL\n.*?)```", text, re.S)
    assert block, "docs/mosquitto.md lost its ACL block"
    rules: dict[str, list[tuple[str, str]]] = {}
    user = ""
    for line in block.group(1).splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "user":
            user = words[1]
        elif words[0] == "topic":
            rules.setdefault(user, []).append((words[1], words[2]))
        elif words[0] == "pattern":
            rules.setdefault("%u", []).append((words[1], words[2]))
    return rules


def test_the_embedded_acl_is_the_documented_one() -> None:
    """One ACL, two places (mosquitto's file in the docs, access.py): this keeps them equal."""
    from tinyota_mqtt.core.passwords import Password

    documented = _documented_acl()
    access = Access(prefix="tinyota", discovery_prefix="homeassistant", status_topic="homeassistant/status",
                    devices={"kitchen-1": Password.parse("x")}, server_password=Secret("s"),
                    server_client_id="tinyota-server", homeassistant=Password.parse("h"))
    logins = {"tinyota": SERVER_USER, "homeassistant": "homeassistant", "%u": "kitchen-1"}
    topics = [f"tinyota/{d}/{kind}" for d in ("kitchen-1", "kitchen-2", "server")
              for kind in ("update", "status", "availability", "state", "install")]
    topics += ["homeassistant/status", "homeassistant/update/tinyota_kitchen-1/config", "elsewhere/x",
               "cmnd/plug/Upgrade", "stat/plug/RESULT", "tele/plug/LWT", "tasmota/discovery/A4CF12ABCDEF/config"]
    for doc_user, login in logins.items():
        rules = [(how, rule.replace("%u", "kitchen-1")) for how, rule in documented[doc_user]]
        for topic in topics:
            may_read = any(how in ("read", "readwrite") and topic_matches(rule, topic) for how, rule in rules)
            may_write = any(how in ("write", "readwrite") and topic_matches(rule, topic) for how, rule in rules)
            assert access.may_receive(login, topic) is may_read, (doc_user, "read", topic)
            assert access.may_publish(login, topic) is may_write, (doc_user, "write", topic)


# -- the start-up warning ----------------------------------------------------------------------------

WARNING = "lets in clients without a user name and password"


def warnings_in(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and WARNING in r.getMessage()]


def test_the_server_warns_when_mosquitto_lets_anonymous_clients_in(
        tmp_path: Path, broker: Mosquitto, prefix: str, servers: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    server = servers(write_config(tmp_path, mqtt=broker.url, prefix=prefix))
    lines = wait_until(lambda: warnings_in(caplog), 15, "the anonymous-broker warning")
    assert len(lines) == 1 and f"broker {broker.url}" in lines[0] and "docs/mosquitto.md" in lines[0]
    assert server.service.mqtt_connected or wait_until(lambda: server.service.mqtt_connected, 10)


def test_no_warning_when_mosquitto_refuses_anonymous_clients(
        tmp_path: Path, prefix: str, servers: Any, caplog: pytest.LogCaptureFixture) -> None:
    mosq = Mosquitto(tmp_path / "mosq", users={"tinyota": "srv-pw"}).start()
    try:
        settings = LinkSettings(url=mosq.url, client_id="x")
        assert anonymous_login_accepted(settings) is False
        caplog.set_level(logging.INFO)
        path = write_config(tmp_path, mqtt=mosq.url, prefix=prefix)
        login = f"  client_id: tinyota-{prefix}\n  username: tinyota\n  password: srv-pw"
        path.write_text(path.read_text().replace(f"  client_id: tinyota-{prefix}", login))
        server = servers(path)
        wait_until(lambda: server.service.mqtt_connected, 10, "the server to log in")
        server.stop()  # waits for the probe to finish, so its verdict is in the log by now
        assert warnings_in(caplog) == []
    finally:
        mosq.stop()


def test_no_warning_on_the_embedded_broker(tmp_path: Path, prefix: str, servers: Any,
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    server = servers(embedded_config(tmp_path, prefix))
    assert server.server.mqtt_url is not None
    assert anonymous_login_accepted(LinkSettings(url=server.server.mqtt_url, client_id="x")) is False
    server.stop()
    assert warnings_in(caplog) == []


def test_probe_cannot_tell_when_nothing_listens() -> None:
    assert anonymous_login_accepted(LinkSettings(url=f"mqtt://127.0.0.1:{free_port()}", client_id="x")) is None


def test_probe_is_let_in_by_anonymous_mosquitto(broker: Mosquitto) -> None:
    assert anonymous_login_accepted(LinkSettings(url=broker.url, client_id="x")) is True


# -- config ----------------------------------------------------------------------------------------

def test_home_assistant_login_is_configured_and_never_printed() -> None:
    from tinyota_mqtt.config import parse_config, redact
    from tinyota_mqtt.errors import ConfigError

    config = parse_config(f"mqtt:\n  embedded_homeassistant_password: '{SENSOR_HASH}'\n", "config.yaml")
    assert config.mqtt.embedded_homeassistant_password is not None
    assert config.mqtt.embedded_homeassistant_password.matches("pw-sensor-1")
    assert redact(config)["mqtt"]["embedded_homeassistant_password"] == "***"
    with pytest.raises(ConfigError) as err:
        parse_config("mqtt:\n  embedded_homeassistant_password: x\ndevices:\n  homeassistant: {}\n", "config.yaml")
    assert "[config.yaml:4] devices.homeassistant: 'homeassistant' is the embedded broker's" in str(err.value)


def test_a_connect_storm_sends_each_device_its_own_announcement_only(
        tmp_path: Path, prefix: str, servers: Any, probes: Any) -> None:
    """A fleet coming back one after another: with amqtt alone, device k got the retained messages
    of the k-1 filters held before it plus the server's availability (measured: 324 messages for
    24 devices, N squared over 2); now one each."""
    fleet = [f"dev-{n:02d}" for n in range(24)]
    text = BASE_CONFIG.split("devices:")[0] + "devices:\n" + "".join(
        f"  {d}: {{{{group: kitchen-lights, password: pw-{d}}}}}\n" for d in fleet)
    path = write_config(tmp_path, mqtt=f"embedded\n  embedded_port: {free_port()}", prefix=prefix, text=text)
    server = servers(path)
    wait_until(lambda: server.service.ready, 30, "the server to log in and sync")
    release(server.config, "kitchen", "1.0.0", 30_000)
    server.call(server.service.tick)
    embedded = Embedded(server, probes)
    # Every announcement stored before the fleet comes back: one published while a device
    # subscribes may rightly reach it twice (retained and live), which is not what this counts.
    # The server publishes them in the config's order, and the broker handles one client's
    # packets in order, so the last one's arrival means all are in.
    watch = embedded.device(fleet[-1], client_id=f"{fleet[-1]}-watch")
    assert subscribe(watch, f"{prefix}/{fleet[-1]}/update")
    watch.wait_for(f"{prefix}/{fleet[-1]}/update")
    devices = []
    for device in fleet:  # each one back and subscribed before the next connects
        probe = embedded.device(device)
        assert subscribe(probe, f"{prefix}/{device}/update")
        devices.append(probe)
    for device, probe in zip(fleet, devices, strict=True):
        probe.wait_for(f"{prefix}/{device}/update")
    embedded.settle(fleet[-1], "1.0.0")  # a round trip through the broker after the last SUBACK
    assert sum(len(p.messages) for p in devices) == len(fleet)


def test_a_second_connection_with_the_same_client_id_takes_over(embedded: Embedded) -> None:
    """MQTT 3.1.1 section 3.1.4: the broker disconnects the existing client. amqtt left the old
    connection running, detached from any session, beside the new one."""
    pre = embedded.pre
    hass = embedded.hass()
    assert subscribe(hass, f"{pre}/kitchen-1/availability")
    first = embedded.device("kitchen-1", will=(f"{pre}/kitchen-1/availability", b"offline"))
    first.client.reconnect_delay_set(60, 60)  # stays down once cut off, so the take-over shows
    gone = threading.Event()
    first.client.on_disconnect = lambda *_a: gone.set()
    first.publish(f"{pre}/kitchen-1/availability", "online", retain=True)
    hass.wait_for(f"{pre}/kitchen-1/availability", lambda m: m.payload == b"online")
    second = embedded.device("kitchen-1")
    assert gone.wait(10), "the first connection was left open"
    hass.wait_for(f"{pre}/kitchen-1/availability", lambda m: m.payload == b"offline")  # its will
    assert subscribe(second, f"{pre}/kitchen-1/update")
    embedded.settle("kitchen-1", "3.0.0")


def test_a_hashed_password_is_checked_off_the_event_loop(embedded: Embedded) -> None:
    access = embedded.server.server.broker.access
    threads: list[tuple[str, str]] = []
    real = access.password_ok

    def recording(username: str, password: str) -> bool:
        threads.append((username, threading.current_thread().name))
        return real(username, password)

    access.password_ok = recording  # the gate looks it up on the instance at every login
    embedded.device("kitchen-1")
    embedded.device("sensor-1")  # first login: the KDF runs
    embedded.device("sensor-1", client_id="sensor-1-again")  # accepted before: one HMAC, on the loop
    by_user = [(user, name == "tinyota-server") for user, name in threads]
    assert ("sensor-1", False) in by_user  # a worker thread, not the server's loop
    assert all(on_loop for user, on_loop in by_user if user == "kitchen-1")
    assert by_user.count(("sensor-1", True)) >= 2  # the repeat checks: cached, so on the loop
