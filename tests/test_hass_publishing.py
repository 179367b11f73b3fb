"""What the server publishes for Home Assistant, and what HA's Install button does, without HA.

A real Service on real files, publishing into a recording bus, on a clock the test moves; the real
Home Assistant checks the same story end to end in tests/test_hass_tier.py.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import release, write_config
from tinyota_mqtt.config import load_config
from tinyota_mqtt.core import hass, protocol
from tinyota_mqtt.service import Service

EXTRA = """\
  pinned: {image: sensor, version: 1.0.0}
  staged: {image: kitchen, auto_update: true, rollout: {waves: [[canary-1], rest]}}
"""


class Recorder:
    """A Bus that keeps the last payload per topic; as a Link, one session that stays up."""

    def __init__(self) -> None:
        self.retained: dict[str, bytes] = {}
        self.live: dict[str, bytes] = {}
        self.qos: dict[str, int] = {}  # the QoS each topic was last published at
        self.log: list[tuple[str, bytes]] = []  # every publish, in order
        self.up = True
        self.session = 1

    def publish(self, topic: str, payload: bytes, *, retain: bool, qos: int = 1) -> None:
        (self.retained if retain else self.live)[topic] = payload
        self.qos[topic] = qos
        self.log.append((topic, payload))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def setup(tmp_path: Path) -> Any:
    path = write_config(tmp_path, timeout="600s")  # longer than the reboot grace
    text = path.read_text().replace("  sensor: {platform: esp32}\n",
                                    "  sensor: {platform: esp32, description: Climate sensor}\n")
    text = text.replace("devices:\n", EXTRA + "devices:\n") + "  pin-1: {group: pinned, password: pw}\n" \
        + "  canary-1: {group: staged, password: pw}\n  staged-1: {group: staged, password: pw}\n"
    path.write_text(text)
    config = load_config(path)
    clock = Clock()
    service = Service(config, clock=clock)
    bus = Recorder()
    service.attach(bus)
    service.on_connected()  # as the link does: everything published once, then the sync marker
    service.handle_message("tinyota/server/sync", bus.live["tinyota/server/sync"])
    yield config, service, bus, clock
    service.close()


def state(bus: Recorder, device: str) -> dict[str, Any]:
    return dict(json.loads(bus.retained[f"tinyota/{device}/state"]))


def available(bus: Recorder, device: str) -> bytes:
    return bus.retained[hass.availability_topic(protocol.Topics(), device)]


def test_entity_states_discovery_and_announcements_go_at_qos_1(setup: Any) -> None:
    """docs/protocol.md's table: the broker acknowledges each of them."""
    config, service, bus, _ = setup
    release(config, "kitchen", "1.0.0")
    service.tick()
    service.reports.on_status("kitchen-1", protocol.Status("downloading", "0.9.0", id=service.registry.open_attempt(
        "kitchen-1").id, progress=10), live=True)  # type: ignore[union-attr]
    topics = protocol.Topics()
    assert bus.qos[topics.state("kitchen-1")] == 1
    assert bus.qos[hass.availability_topic(topics, "kitchen-1")] == 1
    assert bus.qos[topics.update("kitchen-1")] == 1
    assert bus.qos[f"{config.homeassistant.discovery_prefix}/update/tinyota_kitchen-1/config"] == 1


def test_titles_links_and_what_each_group_is_offered(setup: Any) -> None:
    config, service, bus, _ = setup
    release(config, "kitchen", "1.0.0")
    release(config, "sensor", "1.0.0")
    release(config, "sensor", "1.1.0", notes="Faster")
    for device in ("kitchen-1", "sensor-1", "pin-1"):
        service.reports.on_status(device, protocol.Status("idle", "1.0.0"), live=True)
    service.tick()
    base = config.server.public_url
    sensor = state(bus, "sensor-1")
    assert sensor["title"] == "Climate sensor" and state(bus, "kitchen-1")["title"] == "kitchen"
    # On command, and still offered the newest release, with its page on the dashboard.
    assert sensor["latest_version"] == "1.1.0" and sensor["release_summary"] == "Faster"
    assert sensor["release_url"] == f"{base}/releases#release-sensor-1.1.0"
    assert state(bus, "pin-1")["latest_version"] == "1.0.0"  # a pinned group shows its pin: up to date
    loner = state(bus, "loner")  # no group: nothing to offer, and never a null
    assert loner == {"in_progress": False, "update_percentage": None, "title": "Firmware", "release_summary": "",
                     "release_url": f"{base}/releases"}
    found = json.loads(bus.retained["tinyota-ha/update/tinyota_sensor-1/config"])
    assert found["device"]["configuration_url"] == f"{base}/devices/sensor-1"
    assert found["entity_picture"] == f"{base}/icon.svg"


def announced(service: Service, device: str) -> str | None:
    attempt = service.registry.open_attempt(device)
    return attempt.version if attempt is not None else None


def test_home_assistants_install_installs_what_it_was_shown(setup: Any) -> None:
    config, service, bus, _ = setup
    release(config, "sensor", "1.0.0")
    release(config, "sensor", "1.1.0")
    release(config, "kitchen", "2.0.0")
    service.reports.on_status("sensor-1", protocol.Status("idle", "1.0.0"), live=True)
    service.reports.on_status("kitchen-1", protocol.Status("idle", "1.0.0"), live=True)
    service.tick()
    service.cancel(["kitchen-1"])  # held: the group's release is withdrawn from it
    assert state(bus, "kitchen-1")["latest_version"] == "2.0.0"  # HA still offers it
    for device in ("sensor-1", "kitchen-1"):
        service.handle_message(f"tinyota/{device}/install", b"install")
    assert announced(service, "sensor-1") == "1.1.0"
    assert service.registry.device("sensor-1").commanded == "1.1.0"  # as `tinyota install sensor-1`
    kitchen = service.registry.device("kitchen-1")
    assert announced(service, "kitchen-1") == "2.0.0" and not kitchen.held
    assert kitchen.commanded is None  # handed back to its automatic group, not pinned to 2.0.0


def test_install_from_home_assistant_in_a_rollout_group_installs_that_device_now(setup: Any) -> None:
    config, service, bus, _ = setup
    for device in ("canary-1", "staged-1"):
        service.reports.on_status(device, protocol.Status("idle", "1.0.0"), live=True)
    release(config, "kitchen", "2.0.0")
    service.tick()  # the rollout starts with its canary; staged-1 waits for the next wave
    assert state(bus, "staged-1")["latest_version"] == "2.0.0"
    service.handle_message("tinyota/staged-1/install", b"install")
    assert announced(service, "staged-1") == "2.0.0"
    # Its own target now, so the server will also serve it the image (policy.refusal).
    assert service.target_version("staged-1") == "2.0.0"


@pytest.mark.parametrize("device", ["kitchen-1", "staged-1"])  # automatic, without and with a rollout
def test_home_assistants_install_of_a_rollback_not_run_yet_installs_the_rollback(setup: Any, device: str) -> None:
    config, service, bus, _ = setup
    release(config, "kitchen", "1.0.0")
    release(config, "kitchen", "2.0.0")
    service.reports.on_status(device, protocol.Status("idle", "2.0.0"), live=True)
    service.install([device], "1.0.0")  # a rollback, on its way
    assert state(bus, device)["latest_version"] == "1.0.0"  # what HA shows, and so what Install means
    service.handle_message(f"tinyota/{device}/install", b"install")
    assert announced(service, device) == "1.0.0"
    assert service.registry.device(device).commanded == "1.0.0"  # still rolled back, not handed to the group


def test_once_a_rollback_runs_home_assistant_offers_the_newest_and_install_hands_it_back(setup: Any) -> None:
    config, service, bus, _ = setup
    release(config, "kitchen", "1.0.0")
    release(config, "kitchen", "2.0.0")
    service.reports.on_status("kitchen-1", protocol.Status("idle", "2.0.0"), live=True)
    service.install(["kitchen-1"], "1.0.0")
    service.reports.on_status("kitchen-1", protocol.Status("idle", "1.0.0"), live=True)  # the rollback landed
    assert state(bus, "kitchen-1")["latest_version"] == "2.0.0"  # the command counts until it runs
    service.handle_message("tinyota/kitchen-1/install", b"install")
    assert announced(service, "kitchen-1") == "2.0.0"
    assert service.registry.device("kitchen-1").commanded is None  # following its group again


def test_home_assistants_install_with_nothing_to_offer_is_refused_with_what_to_do(
        setup: Any, caplog: pytest.LogCaptureFixture) -> None:
    _, service, _, _ = setup
    with caplog.at_level(logging.WARNING, "tinyota.service"):
        service.handle_message("tinyota/sensor-1/install", b"install")  # its image has no release yet
        service.handle_message("tinyota/loner/install", b"install")  # in no group
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2, said
    assert said[0].startswith("sensor-1: install command refused: sensor-1 has nothing to install ("), said
    assert "release a build of its image" in said[0] and "group" not in said[0], said
    assert said[1].startswith("loner: install command refused: loner has nothing to install ("), said
    assert "give it a group" in said[1] and "release" not in said[1], said
    assert announced(service, "sensor-1") is None and announced(service, "loner") is None


def test_a_reboot_inside_an_update_keeps_the_entity_available_for_a_while(setup: Any) -> None:
    config, service, bus, clock = setup
    release(config, "sensor", "1.0.0")
    service.reports.on_availability("sensor-1", True, live=True)
    service.reports.on_status("sensor-1", protocol.Status("idle", "0.9.0"), live=True)
    assert available(bus, "sensor-1") == b"online"
    service.reports.on_availability("sensor-1", False, live=True)  # its last will, no update running
    assert available(bus, "sensor-1") == b"offline"
    service.reports.on_availability("sensor-1", True, live=True)
    service.handle_message("tinyota/sensor-1/install", b"install")
    attempt = service.registry.open_attempt("sensor-1")
    assert attempt is not None
    service.reports.on_status("sensor-1", protocol.Status("rebooting", "0.9.0", 100, attempt.id), live=True)
    assert state(bus, "sensor-1")["update_percentage"] == 100
    service.reports.on_availability("sensor-1", False, live=True)  # the reboot drops its MQTT session
    assert available(bus, "sensor-1") == b"online"
    clock.now += hass.REBOOT_GRACE - 1
    service.tick()
    assert available(bus, "sensor-1") == b"online"
    clock.now += 2  # it never came back: now it is gone
    service.tick()
    assert available(bus, "sensor-1") == b"offline"


def test_a_removed_device_leaves_no_retained_entity_topics(setup: Any, tmp_path: Path) -> None:
    config, service, bus, _ = setup
    service.reports.on_status("ghost", protocol.Status("idle", "1.0.0"), live=True)  # reported, but not in the config
    service.hass.publish_all()
    assert bus.retained["tinyota-ha/update/tinyota_ghost/config"] == b""
    assert bus.retained["tinyota/ghost/state"] == b"" and available(bus, "ghost") == b""


def test_a_forged_entity_availability_is_put_right(setup: Any) -> None:
    _, service, bus, clock = setup
    service.reports.on_availability("sensor-1", True, live=True)
    topic = hass.availability_topic(protocol.Topics(), "sensor-1")
    bus.retained.pop(topic)
    service.handle_message(topic, b"offline", retained=True)  # someone else's retained "offline"
    clock.now += 2
    service.tick()
    assert bus.retained[topic] == b"online"


def test_a_burst_of_reports_makes_one_state_per_device_and_an_outcome_waits_for_nothing(tmp_path: Path) -> None:
    """With ``defer`` (the runner's call_soon) states are published once per device and turn of the
    event loop, from the device's last word; without it (the other tests here), at once."""
    config = load_config(write_config(tmp_path))
    turn: list[Any] = []  # what the event loop would run next
    service = Service(config, defer=turn.append)
    sent: list[tuple[str, bytes]] = []

    class Counting(Recorder):
        def publish(self, topic: str, payload: bytes, *, retain: bool, qos: int = 1) -> None:
            super().publish(topic, payload, retain=retain, qos=qos)
            sent.append((topic, payload))

    bus = Counting()
    service.attach(bus)
    service.on_connected()
    service.handle_message("tinyota/server/sync", bus.live["tinyota/server/sync"])

    def end_of_turn() -> None:
        while turn:
            turn.pop(0)()

    try:
        release(config, "kitchen", "2.0.0")
        for device in ("kitchen-1", "kitchen-2"):
            service.reports.on_status(device, protocol.Status("idle", "1.0.0"), live=True)
        service.tick()  # announces 2.0.0 to the group
        end_of_turn()
        ids = {d: service.registry.open_attempt(d).id for d in ("kitchen-1", "kitchen-2")}  # type: ignore[union-attr]
        sent.clear()
        for progress in range(5, 101, 5):  # a burst: 20 reports from each, interleaved
            for device in ("kitchen-1", "kitchen-2"):
                service.handle_message(f"tinyota/{device}/status", json.dumps(
                    {"state": "downloading", "version": "1.0.0", "progress": progress, "id": ids[device]}).encode())
        assert not [t for t, _ in sent if t.endswith("/state")]  # nothing yet: the turn is not over
        end_of_turn()
        states = [t for t, _ in sent if t.endswith("/state")]
        assert sorted(states) == ["tinyota/kitchen-1/state", "tinyota/kitchen-2/state"]
        assert state(bus, "kitchen-1")["update_percentage"] == 100 and state(bus, "kitchen-1")["in_progress"]
        # The outcome: published at the end of the very turn that confirmed it.
        sent.clear()
        service.handle_message("tinyota/kitchen-1/status", b'{"state":"idle","version":"2.0.0"}')
        end_of_turn()
        assert [t for t, _ in sent if t.endswith("/state")] == ["tinyota/kitchen-1/state"]
        assert state(bus, "kitchen-1")["installed_version"] == "2.0.0" and not state(bus, "kitchen-1")["in_progress"]
        # Nothing changed: nothing is published (nor serialised) again.
        sent.clear()
        service.handle_message("tinyota/kitchen-1/status", b'{"state":"idle","version":"2.0.0"}')
        end_of_turn()
        assert sent == []
    finally:
        service.close()


def entity_topics(config: Any, device: str) -> tuple[str, str, str]:
    topics = protocol.Topics()
    return (f"{config.homeassistant.discovery_prefix}/update/tinyota_{device}/config", topics.state(device),
            hass.availability_topic(topics, device))


def test_publish_all_sends_every_entity_again_whole_and_nothing_else_repeats(setup: Any) -> None:
    """After a reconnect or Home Assistant's restart every entity is sent again even if nothing
    changed (the broker or HA may have lost it); outside that, an unchanged one is not."""
    config, service, bus, _ = setup
    discovery, state_topic, entity = entity_topics(config, "kitchen-1")
    before = {t: bus.retained[t] for t in (discovery, state_topic, entity)}
    bus.log.clear()
    service.hass.publish_all()
    assert [(t, p) for t, p in bus.log if t in before] == [(discovery, before[discovery]),
                                                          (state_topic, before[state_topic]), (entity, before[entity])]
    bus.log.clear()
    service.hass.publish_discovery("kitchen-1")
    service.hass.publish_state("kitchen-1")
    service.hass.publish_availability("kitchen-1")
    assert bus.log == []


def test_a_device_gone_from_the_config_is_removed_from_home_assistant_once(setup: Any) -> None:
    config, service, bus, _ = setup
    service.registry.update_device("gone", version="1.0.0", online=True)
    # a configured device with a record
    service.reports.on_status("kitchen-1", protocol.Status("idle", "1.0.0"), live=True)
    bus.log.clear()
    service.hass.publish_all()
    gone = entity_topics(config, "gone")
    assert [(t, p) for t, p in bus.log if t in gone] == [(t, b"") for t in gone]
    assert all(not t.endswith(("_kitchen-1/config", "kitchen-1/state", "kitchen-1/entity")) or p
               for t, p in bus.log)  # the configured ones stay
    bus.log.clear()
    service.hass.publish_all()  # Home Assistant restarted again: nothing left to remove
    service.publisher.forget_sent()  # nor after a reconnect: an empty retained message is gone for good
    service.hass.publish_all()
    assert [t for t, _ in bus.log if t in gone] == []


def test_the_discovered_device_names_its_firmware_and_platform(setup: Any) -> None:
    config, service, bus, _ = setup
    discovery = entity_topics(config, "kitchen-1")[0]
    device = json.loads(bus.retained[discovery])["device"]
    assert (device["name"], device["model"]) == ("kitchen-1", "kitchen ESP8266")
    # what it says wins
    service.reports.on_status("kitchen-1", protocol.Status("idle", "1.0.0", platform="esp32"), live=True)
    device = json.loads(bus.retained[discovery])["device"]
    assert (device["model"], device["sw_version"]) == ("kitchen ESP32", "1.0.0")
    assert json.loads(bus.retained[entity_topics(config, "loner")[0]])["device"]["model"] == "unassigned"


def test_nothing_is_published_for_a_device_that_is_not_configured(setup: Any) -> None:
    _, service, bus, _ = setup
    bus.log.clear()
    service.hass.changed("ghost")
    service.hass.flush()
    service.hass.publish_state("ghost")
    service.hass.publish_availability("ghost")
    service.hass.publish_discovery("ghost")
    assert bus.log == []


def test_before_any_release_the_state_links_to_the_images_releases(setup: Any) -> None:
    config, _, bus, _ = setup
    assert state(bus, "kitchen-1")["release_url"] == f"{config.server.public_url}/releases#image-kitchen"
    assert state(bus, "loner")["release_url"] == f"{config.server.public_url}/releases"


def test_a_state_overwritten_meanwhile_is_published_again_on_the_next_change(setup: Any) -> None:
    _, service, bus, _ = setup
    topic = protocol.Topics().state("kitchen-1")
    good = bus.retained[topic]
    service.publisher.publish(topic, b"", retain=True, force=True)  # e.g. cleared through the API
    bus.log.clear()
    service.hass.changed("kitchen-1")  # nothing about the device changed
    service.hass.flush()
    assert bus.log[0] == (topic, good)


def test_a_drop_mid_update_is_forgiven_for_the_reboot_grace_but_not_past_the_deadline(setup: Any) -> None:
    config, service, bus, clock = setup
    release(config, "kitchen", "1.0.0")
    service.tick()
    attempt = service.registry.open_attempt("kitchen-1")
    assert attempt is not None
    service.reports.on_status("kitchen-1", protocol.Status("downloading", "0.9.0", id=attempt.id, progress=50),
                              live=True)
    service.reports.on_availability("kitchen-1", False, live=True)  # the reboot into the new firmware
    assert available(bus, "kitchen-1") == hass.ONLINE
    clock.now += hass.REBOOT_GRACE + 1
    service.hass.tick()
    assert available(bus, "kitchen-1") == hass.OFFLINE
    # Dropped just before the attempt's deadline: forgiven only until the deadline.
    service.reports.on_availability("kitchen-1", True, live=True)
    clock.now = attempt.deadline - 5
    service.reports.on_availability("kitchen-1", False, live=True)
    assert available(bus, "kitchen-1") == hass.ONLINE
    clock.now = attempt.deadline + 1  # still inside the grace, but past the deadline
    service.hass.tick()
    assert available(bus, "kitchen-1") == hass.OFFLINE
