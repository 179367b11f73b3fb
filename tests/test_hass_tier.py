"""The Home Assistant tier: this project against a real Home Assistant core, the way a user runs it.

One Home Assistant (tests/hass/instance.py), one mosquitto, ``tinyota serve`` and ``tinyota
simulate --rate`` as child processes, started once for the module (HA takes a while to start on
two busy cores). The tests run in file order and build on each other, like a user's afternoon:
devices appear, releases arrive, an on-command device is installed from HA, an update is
skipped, HA and the server restart, a device leaves the config. Everything is asserted through
HA's REST and websocket APIs; the last test reads HA's log for MQTT or update warnings.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, Mosquitto, ServerProcess, free_port, release, tinyota, wait_until
from tests.hass.instance import CLIENT_ID, HassSocket, HomeAssistant, StateChange
from tinyota_mqtt.config import load_config

# Home Assistant's start (once here, once more for the restart) can take minutes on a loaded
# two-core machine; every wait inside has its own bound.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

CONFIG = """\
server:
  host: 127.0.0.1
  port: {port}
  public_url: http://127.0.0.1:{port}
  store: firmware
  state: state.sqlite
  admin: {{username: admin, password: admin-secret}}
mqtt:
  url: mqtt://127.0.0.1:{mqtt}
  client_id: tinyota-server
images:
  kitchen: {{platform: esp8266, description: Kitchen light controller}}
  sensor: {{platform: esp32, description: Climate sensor (BME280)}}
groups:
  kitchen-lights: {{image: kitchen, auto_update: true, attempt_timeout: 90s}}
  sensors: {{image: sensor, auto_update: false, attempt_timeout: 90s}}
devices:
  kitchen-1: {{group: kitchen-lights, password: pw-kitchen-1, name: Kitchen 1}}
  kitchen-2: {{group: kitchen-lights, password: pw-kitchen-2}}
  sensor-1: {{group: sensors, password: pw-sensor-1, name: Hall sensor}}
"""
KITCHEN_1, KITCHEN_2, SENSOR = "update.kitchen_1_firmware", "update.kitchen_2_firmware", "update.hall_sensor_firmware"
ENTITIES = (KITCHEN_1, KITCHEN_2, SENSOR)
RATE = 48_000  # bytes per second: a 192 KiB image takes about 4 s, so HA sees the progress move
IMAGE_SIZE = 192 * 1024
LONG_NOTES = ("Reads the BME280 every 30 s instead of every 60 s and sends humidity with one decimal. "
              "The Wi-Fi reconnect waits longer between tries, so a router reboot no longer drains the "
              "battery. Boot logs the reset reason. Known issue: the first reading after a reboot may be "
              "0 °C; it is dropped by the next one.")


@dataclass
class Tier:
    dir: Path
    config_path: Path
    mosquitto: Mosquitto
    ha: HomeAssistant
    ws: HassSocket
    server: ServerProcess | None = None
    simulate: subprocess.Popen[str] | None = None

    @property
    def server_url(self) -> str:
        return load_config(self.config_path).server.public_url

    def start_server(self) -> None:
        self.server = ServerProcess(self.config_path).start()

    def stop_server(self) -> None:
        if self.server is not None:
            assert self.server.terminate() == 0, "".join(self.server.output)
            self.server = None

    def release(self, image: str, version: str, notes: str = "") -> None:
        release(load_config(self.config_path), image, version, IMAGE_SIZE, notes)

    def state(self, entity_id: str) -> dict[str, Any]:
        got = self.ha.state(entity_id)
        assert got is not None, f"{entity_id} is not in Home Assistant"
        return got

    def wait_attrs(self, entity_id: str, timeout: float = 60, **want: Any) -> dict[str, Any]:
        """Wait until HA's state of ``entity_id`` has these values (``state`` included)."""
        def matches() -> dict[str, Any] | None:
            got = self.ha.state(entity_id)
            if got is None:
                return None
            values = {"state": got["state"], **got["attributes"]}
            return got if all(values.get(k) == v for k, v in want.items()) else None
        return dict(wait_until(matches, timeout, f"{entity_id} with {want} (now {self.ha.state(entity_id)})"))

    def reconnect(self) -> None:
        self.ws.close()
        self.ha.login()
        self.ws = HassSocket(self.ha)


@pytest.fixture(scope="module")
def tier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tier]:
    base = tmp_path_factory.mktemp("hass-tier")
    mosquitto = Mosquitto(base / "mosquitto").start()
    ha = HomeAssistant(base / "ha", mosquitto.port)
    try:
        ha.start()
        ha.onboard()
        ha.add_mqtt()
        ws = HassSocket(ha)
    except BaseException:
        print(ha.output_tail(200), file=sys.stderr)
        ha.stop()
        mosquitto.stop()
        raise
    config_path = base / "server" / "config.yaml"
    config_path.parent.mkdir()
    config_path.write_text(CONFIG.format(port=free_port(), mqtt=mosquitto.port))
    t = Tier(base, config_path, mosquitto, ha, ws)
    t.start_server()
    # The devices as a user runs them: `tinyota simulate`, paced like weak Wi-Fi.
    t.simulate = subprocess.Popen(
        [sys.executable, "-m", "tinyota_mqtt", "simulate", "-c", str(config_path), "--rate", str(RATE)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    yield t
    if t.simulate.poll() is None:
        t.simulate.send_signal(signal.SIGINT)
        try:
            t.simulate.wait(15)
        except subprocess.TimeoutExpired:
            t.simulate.kill()
    if t.server is not None:
        t.server.kill()
    t.ws.close()
    ha.stop()
    mosquitto.stop()


def states_of(changes: list[StateChange]) -> list[str | None]:
    return [c.state for c in changes]


# -- what a user sees right after adding the MQTT integration ---------------------------------------

def test_every_device_appears_with_its_installed_version(tier: Tier) -> None:
    for entity_id in ENTITIES:
        tier.wait_attrs(entity_id, 60, state="off", installed_version="1.0.0", latest_version="1.0.0")
    kitchen = tier.state(KITCHEN_1)["attributes"]
    assert kitchen["friendly_name"] == "Kitchen 1 Firmware"
    assert kitchen["title"] == "Kitchen light controller"  # the image's description
    assert tier.state(KITCHEN_2)["attributes"]["friendly_name"] == "kitchen-2 Firmware"
    picture = kitchen["entity_picture"]
    assert picture == f"{tier.server_url}/icon.svg"
    with urllib.request.urlopen(picture, timeout=10) as resp:  # no login: HA's frontend loads it as <img>
        assert resp.headers["Content-Type"] == "image/svg+xml" and resp.read().startswith(b"<svg")
    # Auto updates are ours, not HA's: its MQTT update platform has no such option.
    assert kitchen["auto_update"] is False

    devices = {d["name"]: d for d in tier.ws.ok({"type": "config/device_registry/list"})
               if d["manufacturer"] == "TinyOTA-MQTT"}
    assert set(devices) == {"Kitchen 1", "kitchen-2", "Hall sensor"}
    hall = devices["Hall sensor"]
    assert hall["sw_version"] == "1.0.0" and hall["model"] == "sensor ESP32"
    assert hall["configuration_url"] == f"{tier.server_url}/devices/sensor-1"
    entities = [e for e in tier.ws.ok({"type": "config/entity_registry/list"}) if e["platform"] == "mqtt"]
    assert sorted(e["entity_id"] for e in entities) == sorted(ENTITIES)  # one each, no duplicates


def test_releases_with_and_without_notes_show_as_available(tier: Tier) -> None:
    since = time.monotonic()
    tier.release("sensor", "1.1.0")  # no --notes: once the state HA dropped whole
    got = tier.wait_attrs(SENSOR, 30, state="on", latest_version="1.1.0")
    assert got["attributes"]["installed_version"] == "1.0.0" and got["attributes"]["release_summary"] == ""
    assert got["attributes"]["release_url"] == f"{tier.server_url}/releases#release-sensor-1.1.0"
    tier.release("sensor", "1.2.0", notes=LONG_NOTES)
    got = tier.wait_attrs(SENSOR, 30, state="on", latest_version="1.2.0")
    summary = got["attributes"]["release_summary"]
    assert len(summary) <= 255 and summary.endswith("…") and LONG_NOTES.startswith(summary[:-1])
    assert LONG_NOTES[len(summary) - 1] == " "  # cut where a word ended
    # An on-command group waits: offered, not installed.
    assert tier.state(SENSOR)["attributes"]["in_progress"] is False
    assert "unavailable" not in states_of(tier.ws.history(SENSOR, since))


def test_an_automatic_group_updates_without_an_unavailable_flash(tier: Tier) -> None:
    since = time.monotonic()
    tier.release("kitchen", "1.1.0", notes="Dimmer curve fixed")
    for entity_id in (KITCHEN_1, KITCHEN_2):
        tier.wait_attrs(entity_id, 90, state="off", installed_version="1.1.0", in_progress=False)
        assert_clean_update(tier, entity_id, since, "1.1.0")
    devices = {d["name"]: d for d in tier.ws.ok({"type": "config/device_registry/list"})}
    wait_until(lambda: {d["name"]: d for d in tier.ws.ok({"type": "config/device_registry/list"})}
               ["Kitchen 1"]["sw_version"] == "1.1.0", 20, "sw_version to follow the installed version")
    assert devices["Hall sensor"]["sw_version"] == "1.0.0"


def assert_clean_update(tier: Tier, entity_id: str, since: float, version: str) -> None:
    """Progress rises to 100 before the new version shows, and the entity never goes unavailable."""
    # The websocket's events may trail the REST answer that said the update is done.
    tier.ws.wait_state(entity_id, lambda c: c.attributes.get("installed_version") == version
                       and c.attributes.get("in_progress") is False, 10, since, f"{entity_id} at {version}")
    history = tier.ws.history(entity_id, since)
    assert "unavailable" not in states_of(history), states_of(history)
    first_new = next(i for i, c in enumerate(history) if c.attributes.get("installed_version") == version)
    before = [c.attributes.get("update_percentage") for c in history[:first_new]
              if c.attributes.get("in_progress")]
    seen = [p for p in before if p is not None]
    # Full, and still full through the reboot (a null there would make HA's bar spin instead).
    assert before and before[-1] == 100, f"progress seen before {version} showed: {before}"
    assert seen == sorted(seen), f"progress went backwards: {seen}"
    assert len(set(seen)) >= 3, f"progress should move in steps at --rate {RATE}: {seen}"


def test_install_from_home_assistant_on_an_on_command_device(tier: Tier) -> None:
    since = time.monotonic()
    answer = tier.ws.call_service("update", "install", SENSOR)
    assert answer["success"], answer
    got = tier.wait_attrs(SENSOR, 90, state="off", installed_version="1.2.0", in_progress=False)
    assert got["attributes"]["latest_version"] == "1.2.0"
    assert_clean_update(tier, SENSOR, since, "1.2.0")


def test_skip_hides_a_release_and_survives_a_home_assistant_restart(tier: Tier, browser: Any) -> None:
    tier.release("sensor", "1.3.0", notes="Calibrates the humidity **offset** at boot.")
    tier.wait_attrs(SENSOR, 30, state="on", latest_version="1.3.0")
    screenshot_update_card(tier, browser)
    assert tier.ws.call_service("update", "skip", SENSOR)["success"]
    tier.wait_attrs(SENSOR, 10, state="off", skipped_version="1.3.0")

    tier.ha.stop()
    tier.ha.start()
    tier.reconnect()
    # HA's birth message makes the server send discovery and state again at once.
    tier.wait_attrs(SENSOR, 60, state="off", skipped_version="1.3.0", installed_version="1.2.0",
                    latest_version="1.3.0")
    for entity_id in (KITCHEN_1, KITCHEN_2):
        tier.wait_attrs(entity_id, 30, state="off", installed_version="1.1.0")
    assert tier.ws.call_service("update", "clear_skipped", SENSOR)["success"]
    tier.wait_attrs(SENSOR, 10, state="on", skipped_version=None)


def test_server_stop_greys_out_every_entity_and_a_restart_brings_them_back(tier: Tier) -> None:
    tier.stop_server()
    for entity_id in ENTITIES:
        tier.wait_attrs(entity_id, 30, state="unavailable")
    tier.start_server()
    tier.wait_attrs(SENSOR, 60, state="on", installed_version="1.2.0", latest_version="1.3.0")
    for entity_id in (KITCHEN_1, KITCHEN_2):
        tier.wait_attrs(entity_id, 60, state="off", installed_version="1.1.0")


def test_a_rollback_from_tinyota_shows_in_home_assistant(tier: Tier) -> None:
    # HA cannot install a chosen version (docs/homeassistant.md); TinyOTA can, and HA follows it.
    since = time.monotonic()
    done = tinyota("install", "sensor-1", "--version", "1.1.0", "-c", str(tier.config_path))
    assert done.returncode == 0, done.stdout + done.stderr
    tier.ws.wait_state(SENSOR, lambda c: c.attributes.get("latest_version") == "1.1.0", 20, since,
                       "the rollback target as latest")
    tier.ws.wait_state(SENSOR, lambda c: c.attributes.get("installed_version") == "1.1.0", 90, since,
                       "the rollback to land")
    # Once there, the newest release is offered again.
    tier.wait_attrs(SENSOR, 30, state="on", installed_version="1.1.0", latest_version="1.3.0")
    assert "unavailable" not in states_of(tier.ws.history(SENSOR, since))


def test_a_held_device_of_an_automatic_group_is_offered_the_release_and_installs_from_home_assistant(
        tier: Tier) -> None:
    done = tinyota("cancel", "kitchen-1", "-c", str(tier.config_path))
    assert done.returncode == 0, done.stdout + done.stderr
    tier.release("kitchen", "1.2.0", notes="Scenes fade in")
    tier.wait_attrs(KITCHEN_2, 90, state="off", installed_version="1.2.0", in_progress=False)
    # Held: told nothing, but HA still shows what its group runs.
    got = tier.wait_attrs(KITCHEN_1, 30, state="on", installed_version="1.1.0", latest_version="1.2.0")
    assert got["attributes"]["in_progress"] is False
    since = time.monotonic()
    assert tier.ws.call_service("update", "install", KITCHEN_1)["success"]
    tier.wait_attrs(KITCHEN_1, 90, state="off", installed_version="1.2.0", in_progress=False)
    assert_clean_update(tier, KITCHEN_1, since, "1.2.0")


def test_a_rollout_shows_as_the_images_sensor_with_its_summary(tier: Tier) -> None:
    # docs/rollouts.md: one Home Assistant sensor per image, state = the newest rollout's state,
    # attributes = its summary; created by discovery when the image's first rollout starts.
    done = tinyota("rollout", "start", "sensor", "1.3.0", "--group", "sensors", "-c", str(tier.config_path))
    assert done.returncode == 0, done.stdout + done.stderr

    def sensor_entity() -> str | None:
        entries = tier.ws.ok({"type": "config/entity_registry/list"})
        return next((e["entity_id"] for e in entries if e["unique_id"] == "tinyota_rollout_sensor"), None)

    entity_id = wait_until(sensor_entity, 30, "the rollout sensor of image 'sensor' in HA's entity registry")
    got = tier.wait_attrs(entity_id, 120, state="completed", image="sensor", version="1.3.0", groups=["sensors"])
    assert got["attributes"]["counts"]["succeeded"] == 1 and got["attributes"]["devices"] == 1
    assert got["attributes"]["friendly_name"] == "TinyOTA server sensor rollout"
    tier.wait_attrs(SENSOR, 30, state="off", installed_version="1.3.0")


def test_a_device_removed_from_the_config_leaves_home_assistant(tier: Tier) -> None:
    tier.stop_server()
    text = tier.config_path.read_text().replace(
        "  kitchen-2: {group: kitchen-lights, password: pw-kitchen-2}\n", "")
    tier.config_path.write_text(text)
    tier.start_server()
    wait_until(lambda: tier.ha.state(KITCHEN_2) is None, 30, "kitchen-2's entity to be removed")
    wait_until(lambda: "kitchen-2" not in {d["name"] for d in tier.ws.ok({"type": "config/device_registry/list"})},
               30, "kitchen-2's device to be removed")
    tier.wait_attrs(KITCHEN_1, 30, state="off", installed_version="1.2.0")


def test_home_assistant_logged_no_mqtt_or_update_warnings(tier: Tier) -> None:
    problems = [line for line in tier.ha.log_text().splitlines()
                if (" WARNING " in line or " ERROR " in line)
                and ("homeassistant.components.mqtt" in line or "homeassistant.components.update" in line
                     or "Schema violation" in line)]
    assert problems == []


# -- the screenshot in docs/homeassistant.md ----------------------------------------------------------

def screenshot_update_card(tier: Tier, browser: Any) -> None:
    """HA's own more-info dialog for the sensor, with 1.3.0 offered, in headless Chromium.

    Set TINYOTA_UPDATE_SCREENSHOT=1 to rewrite docs/homeassistant.png.
    """
    tokens = {"access_token": tier.ha.token, "token_type": "Bearer", "expires_in": 1800,
              "refresh_token": tier.ha.refresh_token, "hassUrl": tier.ha.url, "clientId": CLIENT_ID,
              "expires": int(time.time() * 1000) + 1_800_000}
    shot = tier.dir / "homeassistant.png"
    context = browser.new_context(viewport={"width": 1100, "height": 760})
    try:
        page = context.new_page()
        # The frontend keeps its login in localStorage; hand it the onboarded user's tokens.
        page.add_init_script(f"localStorage.setItem('hassTokens', JSON.stringify({json.dumps(tokens)}));")
        page.goto(f"{tier.ha.url}/config/updates", wait_until="load", timeout=90_000)
        page.get_by_text("Hall sensor", exact=False).first.click(timeout=90_000)
        page.get_by_text("Calibrates the humidity", exact=False).first.wait_for(timeout=60_000)
        page.wait_for_timeout(1000)  # the dialog's opening animation
        page.screenshot(path=str(shot))
    finally:
        context.close()
    assert shot.stat().st_size > 10_000
    if os.environ.get("TINYOTA_UPDATE_SCREENSHOT") == "1":
        (ROOT / "docs" / "homeassistant.png").write_bytes(shot.read_bytes())
