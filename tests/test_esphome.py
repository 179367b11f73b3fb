"""ESPHome devices: the YAML `tinyota esphome-snippet` gives out, checked by the real ESPHome and
followed by a stand-in (tests/esphome_standin.py) against a real mosquitto and the real server.

`esphome config` comes from the venv ./dev builds once per machine (``esphome_venv``), whose path
arrives in ``TINYOTA_ESPHOME_VENV``. It validates the YAML schema of every component the snippet
uses for an ESP8266 and an ESP32 board; the C++ inside the lambdas is only compiled by a real
build, which needs toolchains this machine cannot fetch.

The devices here are configured with ``kind: esphome``, as docs/esphome.md tells users to:
``tinyota esphome-snippet`` refuses a device of another kind. The server tells an ``esphome``
device as it tells an esp_client one, since the snippet speaks the tinyota protocol.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import BASE_CONFIG, Mosquitto, Probe, ServerThread, release, tinyota, wait_until, write_config
from tests.esphome_standin import EsphomeStandIn, Lambda, _Loader, foreign_url, load_snippet, malformed
from tests.test_esp_e2e import Trap
from tests.test_faults import documented_acl
from tinyota_mqtt.config import load_config
from tinyota_mqtt.core import esphome, trust
from tinyota_mqtt.core.httpauth import basic_header
from tinyota_mqtt.core.protocol import parse_status

ESPHOME_TIMEOUT = 180  # a cold `esphome config` imports a lot on two busy cores
SERVER_PW = "srv-pw-7Hq2"
WIRETAP_PW = "wiretap-pw-3"
PASSWORDS = {"sensor-1": "pw-sensor-1", "kitchen-1": "pw-kitchen-1"}  # BASE_CONFIG's
# conftest's config with every device an ESPHome one (the loner too: it still has no group).
_HEAD, _DEVICES = BASE_CONFIG.split("devices:\n")
ESPHOME_CONFIG = _HEAD + "devices:\n" + re.sub(r"^(  [\w-]+: \{\{)", r"\1kind: esphome, ", _DEVICES, flags=re.M)


def write_esphome_config(directory: Path, **kw: Any) -> Path:
    return write_config(directory, text=ESPHOME_CONFIG, **kw)


def esphome_bin() -> Path:
    """The ESPHome ./dev built; a missing one fails loudly with the fix, never skips."""
    raw = os.environ.get("TINYOTA_ESPHOME_VENV")
    if not raw:
        pytest.fail("TINYOTA_ESPHOME_VENV is not set: run the tests through `./dev test`, which builds "
                    "ESPHome's venv (or build it with `./dev esphome-venv` and export the path it prints)")
    program = Path(raw) / "bin" / "esphome"
    if not program.exists():
        pytest.fail(f"no ESPHome in {raw}: `./dev esphome-venv` builds it")
    return program


def esphome_config(folder: Path, name: str) -> subprocess.CompletedProcess[str]:
    # It writes .esphome/ beside the YAML: the folder is the test's own.
    return subprocess.run([str(esphome_bin()), "config", name], cwd=folder, capture_output=True, text=True,
                          timeout=ESPHOME_TIMEOUT)


def device_yaml(device: str, platform: str, board: str, version: str, extra: str = "") -> str:
    """The minimal device YAML a user starts from, with the snippet included as a package."""
    return (f"esphome:\n  name: {device}\n"
            f"{platform}:\n  board: {board}\n"
            "logger:\n"
            "wifi:\n  ssid: lab\n  password: !secret wifi_password\n"
            f'substitutions:\n  tinyota_version: "{version}"\n'
            f"packages:\n  tinyota: !include tinyota-{device}.yaml\n" + extra)


def secrets_yaml(devices: dict[str, str]) -> str:
    lines = ["wifi_password: wifi-secret-1"]
    for device, password in devices.items():
        lines += [f"tinyota_{device}_password: {password}", f"tinyota_{device}_mqtt_password: {password}"]
    return "\n".join(lines) + "\n"


def snippet_via_cli(config: Path, device: str, out: Path) -> subprocess.CompletedProcess[str]:
    done = tinyota("esphome-snippet", device, "-c", str(config), "-o", str(out))
    assert done.returncode == 0, done.stderr
    return done


def _validated(stdout: str) -> dict[str, Any]:
    """The config `esphome config` prints after its INFO lines, read with its own tags."""
    body = "\n".join(line for line in stdout.splitlines() if not line.startswith("INFO "))
    return dict(yaml.load(body, Loader=_Loader))


# -- the real `esphome config` ---------------------------------------------------------------------

@pytest.mark.parametrize(("platform", "image", "board", "device"),
                         [("esp8266", "kitchen", "d1_mini", "kitchen-1"), ("esp32", "sensor", "esp32dev", "sensor-1")])
def test_the_snippet_passes_esphome_config(tmp_path: Path, platform: str, image: str, board: str,
                                           device: str) -> None:
    config = write_esphome_config(tmp_path / "tinyota", mqtt="mqtt://192.168.1.2:1883", prefix="lab", port=8123)
    folder = tmp_path / "esphome"
    folder.mkdir()
    snippet_via_cli(config, device, folder / f"tinyota-{device}.yaml")
    (folder / f"{device}.yaml").write_text(device_yaml(device, platform, board, "1.4.0"))
    (folder / "secrets.yaml").write_text(secrets_yaml({device: PASSWORDS[device]}))

    done = esphome_config(folder, f"{device}.yaml")
    assert done.returncode == 0, f"esphome config failed:\n{done.stdout}\n{done.stderr}"
    assert "Configuration is valid!" in done.stdout + done.stderr

    # What ESPHome made of it: the version the device will report is the one its YAML sets.
    conf = _validated(done.stdout)
    assert conf["esphome"]["project"] == {"name": f"tinyota.{image}", "version": "1.4.0"}
    assert [o["platform"] for o in conf["ota"]] == ["http_request"]
    assert conf["http_request"]["follow_redirects"] is False
    assert conf["mqtt"]["log_topic"] is None
    assert conf["mqtt"]["will_message"] == {"topic": f"lab/{device}/availability", "payload": "offline",
                                            "qos": 1, "retain": True}
    assert conf["globals"][0]["restore_value"] is True
    if platform == "esp8266":
        assert conf["esp8266"]["restore_from_flash"] is True
    assert "http://127.0.0.1:8123/" in json.dumps(conf["mqtt"]["on_json_message"], default=str)
    # The passwords stay in secrets.yaml: the snippet names them, never holds them.
    assert PASSWORDS[device] not in (folder / f"tinyota-{device}.yaml").read_text()


def test_the_snippet_joins_a_device_that_has_its_own_ota_and_mqtt(tmp_path: Path) -> None:
    """A lived-in device: ESPHome's own OTA and API, and an mqtt block of its own that the
    package merges into (the device's keys win)."""
    config = write_esphome_config(tmp_path / "tinyota", mqtt="mqtt://192.168.1.2:1883", prefix="lab", port=8123)
    folder = tmp_path / "esphome"
    folder.mkdir()
    snippet_via_cli(config, "sensor-1", folder / "tinyota-sensor-1.yaml")
    extra = ("api:\n"
             "ota:\n  - platform: esphome\n    password: !secret wifi_password\n"
             "mqtt:\n  discovery: false\n  keepalive: 30s\n")
    (folder / "sensor-1.yaml").write_text(device_yaml("sensor-1", "esp32", "esp32dev", "2.0.0", extra))
    (folder / "secrets.yaml").write_text(secrets_yaml({"sensor-1": PASSWORDS["sensor-1"]}))
    done = esphome_config(folder, "sensor-1.yaml")
    assert done.returncode == 0, f"esphome config failed:\n{done.stdout}\n{done.stderr}"
    conf = _validated(done.stdout)
    assert sorted(o["platform"] for o in conf["ota"]) == ["esphome", "http_request"]
    assert conf["mqtt"]["discovery"] is False and conf["mqtt"]["broker"] == "192.168.1.2"


def test_esphome_config_catches_a_broken_snippet(tmp_path: Path) -> None:
    """The check above can fail: without `md5` the flash action is invalid, and ESPHome says so."""
    config = write_esphome_config(tmp_path / "tinyota", mqtt="mqtt://192.168.1.2:1883", prefix="lab")
    folder = tmp_path / "esphome"
    folder.mkdir()
    out = folder / "tinyota-sensor-1.yaml"
    snippet_via_cli(config, "sensor-1", out)
    text = out.read_text()
    broken = re.sub(r"\n *md5: !lambda[^\n]*", "", text)
    assert broken != text
    out.write_text(broken)
    (folder / "sensor-1.yaml").write_text(device_yaml("sensor-1", "esp32", "esp32dev", "1.0.0"))
    (folder / "secrets.yaml").write_text(secrets_yaml({"sensor-1": "pw"}))
    done = esphome_config(folder, "sensor-1.yaml")
    assert done.returncode != 0
    assert "md5" in done.stdout + done.stderr


# -- the command -------------------------------------------------------------------------------------

def test_the_command_refuses_what_it_cannot_make_a_snippet_for(tmp_path: Path) -> None:
    config = write_esphome_config(tmp_path, mqtt="mqtt://127.0.0.1:1883")
    unknown = tinyota("esphome-snippet", "nosuch", "-c", str(config))
    assert unknown.returncode == 2 and "no device 'nosuch'" in unknown.stderr and not unknown.stdout
    loner = tinyota("esphome-snippet", "loner", "-c", str(config))  # in no group: no image, no platform
    assert loner.returncode == 2 and "in no group" in loner.stderr
    printed = tinyota("esphome-snippet", "sensor-1", "-c", str(config))
    assert printed.returncode == 0
    assert "mqtt.url names 127.0.0.1, which the device cannot reach" in printed.stderr
    assert printed.stdout.startswith("# TinyOTA for ESPHome")
    assert "pw-sensor-1" not in printed.stdout + printed.stderr


def test_the_command_refuses_a_device_of_another_kind(tmp_path: Path) -> None:
    """A snippet for a device the server tells another way would never be told: refused, with the fix."""
    plain = write_config(tmp_path / "plain", mqtt="mqtt://10.0.0.2:1883")  # sensor-1 has no kind: tinyota
    done = tinyota("esphome-snippet", "sensor-1", "-c", str(plain))
    assert done.returncode == 2 and not done.stdout
    assert "error: device 'sensor-1' is of kind 'tinyota', not 'esphome'" in done.stderr
    assert "hint: set `kind: esphome` on it (devices.sensor-1.kind)" in done.stderr
    text = plain.read_text().replace("sensor-1: {group: sensors,", "sensor-1: {group: sensors, kind: esphome,")
    plain.write_text(text)
    assert tinyota("esphome-snippet", "sensor-1", "-c", str(plain)).returncode == 0


def test_the_snippet_needs_a_url_it_can_quote(tmp_path: Path) -> None:
    text = write_esphome_config(tmp_path, mqtt="mqtt://10.0.0.2:1883").read_text()
    (tmp_path / "config.yaml").write_text(re.sub(r"public_url: \S+", 'public_url: "http://ota.lan:8000/a$b"', text))
    done = tinyota("esphome-snippet", "sensor-1", "-c", str(tmp_path / "config.yaml"))
    assert done.returncode == 2 and "cannot go into an ESPHome lambda" in done.stderr


# -- the Python twins of the snippet's checks --------------------------------------------------------

BASE = "http://ota.lan:8000"
URLS = [
    f"{BASE}/fw/sensor/1.1.0.bin", f"{BASE}0/fw/a.bin", f"{BASE}@evil/fw/a.bin", f"{BASE}/fw/../admin",
    f"{BASE}/fw/%2e%2e/x", f"{BASE}/fw\\x", f"{BASE}/fw/a@b", "http://evil/fw/a.bin", "https://ota.lan:8000/fw/a",
    f"{BASE}", f"{BASE}/", f"{BASE}/.", f"{BASE}/..", "http://OTA.lan:8000/fw/a.bin", f"{BASE}//evil/x",
    f"{BASE}/fw/a.bin?x=1", f"{BASE}/fw/%2F/a",
]


@pytest.mark.parametrize("url", URLS)
def test_the_url_rule_is_never_looser_than_the_servers(url: str) -> None:
    """What the snippet accepts, core/trust.py accepts too: the device never sends its password
    where an esp_client device would not."""
    env = type("E", (), {"server_url": BASE})()
    if not foreign_url({"url": url}, env):  # type: ignore[arg-type]
        assert trust.is_under_base(url, BASE), url


def test_the_twins_follow_the_snippet_text() -> None:
    """The stand-in's twins and the snippet's C++ name the same limits (a drift shows here)."""
    text = esphome.render(esphome.SnippetParams("d", "img", "esp32", "p", BASE, "b", 1883))
    assert '!text("url", 384)' in text and f'!text("id", {esphome.ATTEMPT_ID_MAX})' in text
    for bad in ("@", "/./", "/../", "%2e", "%2E", "%2f", "%2F", "%5c", "%5C"):
        assert f'"{bad}"' in text
    ok = {"id": "a1", "version": "1.0.0", "url": f"{BASE}/x", "md5": "0" * 32}
    assert not malformed(ok, None)  # type: ignore[arg-type]
    for key, value in [("md5", "A" * 32), ("md5", "0" * 31), ("id", ""), ("id", "a" * 65), ("version", 1),
                       ("url", "http://x/ y"), ("id", "ä")]:
        assert malformed({**ok, key: value}, None), (key, value)  # type: ignore[arg-type]
    doc = load_snippet(text, "3.2.1")
    assert doc["esphome"]["project"]["version"] == "3.2.1"
    assert isinstance(doc["ota"][0]["on_error"][0]["mqtt.publish_json"]["payload"], str)
    assert not isinstance(doc["mqtt"]["on_json_message"], Lambda)


# -- the stand-in against mosquitto and the server ---------------------------------------------------

class Lab:
    """mosquitto with docs/mosquitto.md's logins and ACL, the server, and ESPHome stand-ins."""

    def __init__(self, tmp_path: Path, prefix: str, servers: Any, *, signing: bool = False) -> None:
        self.tmp = tmp_path
        self.prefix = prefix
        # A wiretap login that may read every topic, to look for passwords in everything published.
        self.mosq = Mosquitto(tmp_path / "mosq", users={"tinyota": SERVER_PW, "wiretap": WIRETAP_PW, **PASSWORDS},
                              acl=documented_acl(prefix) + "\nuser wiretap\ntopic read #\n").start()
        text = write_esphome_config(tmp_path / "server", mqtt=self.mosq.url, prefix=prefix,
                                    confirm="download+report").read_text()
        text = text.replace(f"  client_id: tinyota-{prefix}",
                            f"  client_id: tinyota-{prefix}\n  username: tinyota\n  password: {SERVER_PW}")
        if signing:
            key = tmp_path / "signing.key"
            made = tinyota("keygen", str(key))
            assert made.returncode == 0, made.stderr
            text = text.replace("  admin:", f"  signing_key: {key}\n  admin:")
        self.config_path = tmp_path / "server" / "config.yaml"
        self.config_path.write_text(text)
        self.server: ServerThread = servers(self.config_path)
        wait_until(lambda: self.server.service.ready, 10, "the server to log in")
        self.wiretap = Probe(self.mosq.url, username="wiretap", password=WIRETAP_PW).wait_connected().subscribe("#")
        self.devices: list[EsphomeStandIn] = []

    def snippet(self, device: str) -> str:
        return esphome.snippet(load_config(self.config_path), device)

    def device(self, device: str, version: str, **kw: Any) -> EsphomeStandIn:
        secrets = {f"tinyota_{device}_password": PASSWORDS[device],
                   f"tinyota_{device}_mqtt_password": PASSWORDS[device]}
        standin = EsphomeStandIn(self.snippet(device), version=version, secrets=secrets,
                                 state_dir=self.tmp / "esphome" / device, **kw)
        self.devices.append(standin)
        return standin.start()

    def view(self, device: str) -> dict[str, Any]:
        return self.server.view(device)

    def attempt(self, device: str) -> dict[str, Any]:
        return self.view(device)["attempt"] or {}

    def install(self, device: str) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.server.port, timeout=10)
        conn.request("POST", f"/api/devices/{device}/install", body=b"{}",
                     headers={"Authorization": basic_header("admin", "admin-secret"),
                              "Content-Type": "application/json"})
        assert conn.getresponse().status == 202
        conn.close()

    def statuses(self, device: str) -> list[dict[str, Any]]:
        return [json.loads(m.payload) for m in self.wiretap.received(f"{self.prefix}/{device}/status")]

    def explain(self, standin: EsphomeStandIn) -> str:
        return "\n".join(standin.events)

    def assert_no_password_on_the_bus(self) -> None:
        secrets = [*PASSWORDS.values(), SERVER_PW, "admin-secret"]
        with self.wiretap.lock:
            seen = [(m.topic, bytes(m.payload)) for m in self.wiretap.messages]
        assert seen, "the wiretap heard nothing"
        for topic, payload in seen:
            for secret in secrets:
                assert secret not in topic and secret.encode() not in payload, (topic, payload)

    def close(self) -> None:
        for standin in self.devices:
            standin.stop()
        self.wiretap.close()
        self.server.stop()
        self.mosq.stop()


@pytest.fixture
def lab(tmp_path: Path, prefix: str, servers: Any) -> Iterator[Lab]:
    made = Lab(tmp_path, prefix, servers)
    yield made
    made.close()


def test_an_esphome_device_is_updated_and_confirmed_by_what_it_reports(lab: Lab) -> None:
    sensor = lab.device("sensor-1", "1.0.0")
    wait_until(lambda: lab.view("sensor-1")["installed"] == "1.0.0" and lab.view("sensor-1")["online"], 10,
               "the device's idle report and birth message")
    rel = release(lab.server.config, "sensor", "1.1.0")
    lab.install("sensor-1")

    wait_until(lambda: lab.attempt("sensor-1").get("state") == "succeeded", 20,
               f"the update to be confirmed:\n{lab.explain(sensor)}")
    assert lab.view("sensor-1")["installed"] == "1.1.0"
    assert sensor.boots == 2 and sensor.version == "1.1.0", lab.explain(sensor)
    assert (sensor.dir / "firmware.bin").read_bytes() == lab.server.service.store.path_of(rel).read_bytes()
    assert sensor.downloads == [f"{lab.server.config.server.public_url}/fw/sensor/1.1.0.bin"]

    # Each report is one the server's own parser takes, in the snippet's order of events.
    attempt_id = lab.attempt("sensor-1")["id"]
    reports = lab.statuses("sensor-1")
    for report in reports:
        parse_status(json.dumps(report).encode())
    states = [(r["state"], r.get("id")) for r in reports]
    assert states[0] == ("idle", None)
    assert ("downloading", attempt_id) in states and ("rebooting", attempt_id) in states
    # After the reboot: idle on the new version (and, if the retained announcement is still there when
    # it subscribes, that answered with its id: the server withdraws it once it sees the version).
    assert {k: reports[-1][k] for k in ("state", "version", "platform")} == {
        "state": "idle", "version": "1.1.0", "platform": "esp32"}
    assert (sensor.dir / "attempted").read_text() == attempt_id
    lab.assert_no_password_on_the_bus()


def test_a_failed_attempt_id_is_not_tried_again(lab: Lab) -> None:
    sensor = lab.device("sensor-1", "1.0.0")
    wait_until(lambda: lab.view("sensor-1")["installed"] == "1.0.0", 10, "the device's first report")
    rel = release(lab.server.config, "sensor", "1.1.0")
    # The bytes on disk no longer match the announced md5: ESPHome's own check fails the update.
    blob = lab.server.service.store.path_of(rel)
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    lab.install("sensor-1")

    wait_until(lambda: lab.attempt("sensor-1").get("state") == "failed", 20,
               f"the failure to reach the server:\n{lab.explain(sensor)}")
    attempt = lab.attempt("sensor-1")
    assert attempt["error"] == "MD5 mismatch (ESPHome OTA error 0x8B)"
    assert lab.view("sensor-1")["installed"] == "1.0.0" and sensor.boots == 1

    # It reboots; the retained announcement (the same id) arrives again, and is not acted on.
    sensor.stop()
    sensor.start()
    wait_until(lambda: "check attempted: then" in sensor.events, 10,
               f"the device to see the announcement again:\n{lab.explain(sensor)}")
    assert len(sensor.downloads) == 1, lab.explain(sensor)
    assert lab.attempt("sensor-1")["id"] == attempt["id"] and lab.attempt("sensor-1")["state"] == "failed"
    lab.assert_no_password_on_the_bus()


def test_a_power_cut_mid_download_does_not_start_the_attempt_again(lab: Lab) -> None:
    """The attempt id reaches flash before the download starts: the device that loses power in the
    middle comes back, sees the same announcement, and leaves it alone."""
    sensor = lab.device("sensor-1", "1.0.0", crash_after_bytes=1)
    wait_until(lambda: lab.view("sensor-1")["installed"] == "1.0.0", 10, "the device's first report")
    release(lab.server.config, "sensor", "1.1.0")
    lab.install("sensor-1")
    wait_until(lambda: any(e.startswith("power cut") for e in sensor.events), 20,
               f"the download to start:\n{lab.explain(sensor)}")
    wait_until(lambda: lab.view("sensor-1")["online"] is False, 30, "the broker to send the device's will")

    sensor.crash_after_bytes = None
    sensor.start()
    wait_until(lambda: "check attempted: then" in sensor.events, 10,
               f"the device to see the announcement again:\n{lab.explain(sensor)}")
    assert len(sensor.downloads) == 1 and sensor.version == "1.0.0", lab.explain(sensor)


def test_an_announcement_outside_the_server_is_refused(lab: Lab) -> None:
    sensor = lab.device("sensor-1", "1.0.0")
    wait_until(lambda: lab.view("sensor-1")["installed"] == "1.0.0", 10, "the device's first report")
    trap = Trap()
    forger = Probe(lab.mosq.url, username="tinyota", password=SERVER_PW).wait_connected()
    try:
        ours = lab.server.config.server.public_url
        port = ours.rsplit(":", 1)[1]
        for n, url in enumerate([trap.url(), f"{ours}@127.0.0.1:{trap.port}/fw/sensor/6.6.6.bin",
                                 f"http://127.0.0.1:{port}0/fw/sensor/6.6.6.bin", f"{ours}/fw/../../6.6.6.bin"]):
            attempt_id = f"forged-{n}"
            body = {"id": attempt_id, "version": "6.6.6", "url": url, "size": 1, "md5": "0" * 32}
            forger.publish(f"{lab.prefix}/sensor-1/update", json.dumps(body), retain=True)
            report = lab.wiretap.wait_for(f"{lab.prefix}/sensor-1/status",
                                          lambda m, a=attempt_id: json.loads(m.payload).get("id") == a)
            assert json.loads(report.payload) == {"state": "failed", "version": "1.0.0", "id": attempt_id,
                                                  "error": trust.NOT_OUR_SERVER, "platform": "esp32"}, url
        # The version it runs: answered idle without any check, and nothing is fetched either.
        forger.publish(f"{lab.prefix}/sensor-1/update", json.dumps(
            {"id": "same-1", "version": "1.0.0", "url": trap.url(), "md5": "0" * 32}), retain=True)
        report = lab.wiretap.wait_for(f"{lab.prefix}/sensor-1/status", lambda m: b"same-1" in m.payload)
        assert json.loads(report.payload) == {"state": "idle", "version": "1.0.0", "id": "same-1", "platform": "esp32"}
        assert not trap.connected.is_set() and trap.received == []
        assert sensor.downloads == [] and not (sensor.dir / "attempted").exists(), lab.explain(sensor)
    finally:
        forger.close()
        trap.close()
    lab.assert_no_password_on_the_bus()


def test_an_esphome_device_is_updated_by_a_server_that_signs_its_announcements(
        tmp_path: Path, prefix: str, servers: Any) -> None:
    """ESPHome cannot check a signature (docs/esphome.md): with server.signing_key set, the
    announcement carries ``sig``, the snippet reads past it, and the update is confirmed."""
    lab = Lab(tmp_path, prefix, servers, signing=True)
    try:
        sensor = lab.device("sensor-1", "1.0.0")
        wait_until(lambda: lab.view("sensor-1")["installed"] == "1.0.0", 10, "the device's first report")
        release(lab.server.config, "sensor", "1.1.0")
        lab.install("sensor-1")
        wait_until(lambda: lab.attempt("sensor-1").get("state") == "succeeded", 20,
                   f"the update to be confirmed:\n{lab.explain(sensor)}")
        told = [json.loads(m.payload) for m in lab.wiretap.received(f"{prefix}/sensor-1/update") if m.payload]
        assert told and all(isinstance(a.get("sig"), str) and a["sig"] for a in told), told
        assert sensor.version == "1.1.0" and sensor.downloads == [f"{lab.server.url}/fw/sensor/1.1.0.bin"]
        lab.assert_no_password_on_the_bus()
    finally:
        lab.close()
