"""Issue 13's "done when": one ``tinyota release`` updates an esp_client board, a Tasmota plug and
an ESPHome sensor in one staged rollout, each confirmed by what it itself reports, and no password
ever crosses the broker.

The three devices:

- ``board-1``: the real esp_client core, ``esp_client/host/build/tinyota-device`` (tests/test_esp_e2e.py);
- ``plug-1``: the Tasmota stand-in (tests/tasmota_standin.py, written from Tasmota's docs and source);
- ``sensor-1``: the ESPHome stand-in (tests/esphome_standin.py), run by the very YAML that
  ``tinyota esphome-snippet sensor-1`` wrote.

They share one group, one image and one release: a test app image for the ESP8266 with its version
inside. The stand-ins do not care what else is in it (they neither run nor flash it; each reads
the version the image carries, as the host device does, and boots "into" it), so the one file
serves all three. mosquitto runs with docs/mosquitto.md's logins and ACL (the TinyOTA block, and
the Tasmota block for plug-1), plus a wiretap login that reads ``#`` for the whole test.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, Mosquitto, Probe, ServerThread, free_port, tinyota, wait_until
from tests.esphome_standin import EsphomeStandIn
from tests.tasmota_standin import TasmotaStandIn
from tests.test_esp_e2e import Fleet as Boards
from tests.test_esp_e2e import device_program  # noqa: F401  (a fixture: the host build, made once)
from tests.test_faults import documented_acl
from tinyota_mqtt.core import attempts as att
from tinyota_mqtt.core import rollout as ro
from tinyota_mqtt.core import tasmota
from tinyota_mqtt.core.image import make_test_image

SERVER_PW = "srv-pw-Mx4q"
WIRETAP_PW = "wiretap-pw-Mx9"
ADMIN_PW = "admin-pw-Mx2w"
PASSWORDS = {"board-1": "pw-board-1-Mx", "plug-1": "pw-plug-1-Mx", "sensor-1": "pw-sensor-1-Mx"}
PLUG_MAC = "A4CF12ABCDEF"  # the MAC docs/mosquitto.md's Tasmota block lets plug-1 announce itself under
WAIT = 20.0  # one step on loopback takes well under a second; this is the margin of a loaded machine

CONFIG = """\
server:
  host: 127.0.0.1
  port: {port}
  public_url: http://127.0.0.1:{port}
  store: firmware
  state: state.sqlite
  admin: {{username: admin, password: {admin}}}
mqtt:
  url: {mqtt}
  prefix: {prefix}
  client_id: tinyota-{prefix}
  username: tinyota
  password: {server_pw}
homeassistant:
  enabled: true
  discovery_prefix: {prefix}-ha
  status_topic: {prefix}-ha/status
images:
  lab: {{platform: esp8266}}
groups:
  lab:
    image: lab
    auto_update: true
    attempt_timeout: 60s
    confirm: download+report
    rollout:
      waves: [[board-1], [plug-1], rest]
devices:
  board-1: {{group: lab, password: {board}}}
  plug-1: {{group: lab, kind: tasmota, mac: {mac}, password: {plug}}}
  sensor-1: {{group: lab, kind: esphome, password: {sensor}}}
"""


def tasmota_acl() -> str:
    """docs/mosquitto.md's block for the Tasmota device plug-1."""
    text = (ROOT / "docs" / "mosquitto.md").read_text()
    block = re.search(r"```\n(user plug-1\n.*?)```", text, re.S)
    assert block, "docs/mosquitto.md lost its Tasmota ACL block"
    return block.group(1)


class Lab:
    def __init__(self, tmp: Path, prefix: str, boards: Boards) -> None:
        self.tmp, self.prefix, self.boards = tmp, prefix, boards
        self.mosq = Mosquitto(tmp / "mosq", users={"tinyota": SERVER_PW, "wiretap": WIRETAP_PW, **PASSWORDS},
                              acl=f"{documented_acl(prefix)}\n{tasmota_acl()}\n"
                                  f"user wiretap\ntopic read #\ntopic write {prefix}/test/#\n").start()
        # Everything from the first byte on: the no-password check covers the whole test.
        self.wiretap = Probe(self.mosq.url, username="wiretap", password=WIRETAP_PW).wait_connected().subscribe("#")
        self.config_path = tmp / "server" / "config.yaml"
        self.config_path.parent.mkdir(parents=True)
        self.config_path.write_text(CONFIG.format(
            port=free_port(), admin=ADMIN_PW, mqtt=self.mosq.url, prefix=prefix, server_pw=SERVER_PW, mac=PLUG_MAC,
            board=PASSWORDS["board-1"], plug=PASSWORDS["plug-1"], sensor=PASSWORDS["sensor-1"]))
        self.server: ServerThread | None = None
        self.plug: TasmotaStandIn | None = None
        self.sensor: EsphomeStandIn | None = None

    def view(self, device: str) -> dict[str, Any]:
        assert self.server is not None
        return self.server.view(device)

    def attempt(self, device: str) -> att.Attempt:
        assert self.server is not None
        [newest, *_] = self.server.call(self.server.service.registry.history, device)
        return newest  # type: ignore[no-any-return]

    def messages(self) -> list[tuple[str, bytes]]:
        with self.wiretap.lock:
            return [(m.topic, bytes(m.payload)) for m in self.wiretap.messages]

    def payloads(self, topic: str) -> list[bytes]:
        return [bytes(m.payload) for m in self.wiretap.received(topic)]

    def explain(self) -> str:
        events = "\n".join(self.sensor.events) if self.sensor else ""
        fetches = self.plug.fetches if self.plug else []
        return f"{self.boards.explain()}\n--- sensor-1 (ESPHome) ---\n{events}\n--- plug-1 (Tasmota) fetches: {fetches}"

    def wait(self, predicate: Any, what: str) -> Any:
        try:
            return wait_until(predicate, WAIT, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.explain()}") from None

    def close(self) -> None:
        for standin in (self.sensor, self.plug):
            if standin is not None:
                standin.stop()
        self.boards.stop_all()
        if self.server is not None:
            self.server.stop()
        self.wiretap.close()
        self.mosq.stop()


@pytest.fixture
def lab(tmp_path: Path, prefix: str, device_program: Path) -> Iterator[Lab]:  # noqa: F811
    made = Lab(tmp_path, prefix, Boards(device_program, tmp_path / "boards", "", prefix))
    try:
        yield made
    finally:
        made.close()


def test_one_release_updates_an_esp_client_board_a_tasmota_plug_and_an_esphome_sensor_in_one_rollout(
        lab: Lab) -> None:
    lab.server = ServerThread(lab.config_path).start()
    server = lab.server
    lab.wait(lambda: server.service.ready, "the server to log in and read the broker")

    # The three devices, each the way its owner sets it up.
    lab.boards.broker = lab.mosq.url
    lab.boards.server_url = server.config.server.public_url
    board = lab.boards.start("board-1", "1.0.0", password=PASSWORDS["board-1"])
    lab.plug = plug = TasmotaStandIn(lab.mosq.url, "plug-1", version="1.0.0", mac=PLUG_MAC, username="plug-1",
                                     password=PASSWORDS["plug-1"]).start()
    snippet_file = lab.tmp / "esphome" / "tinyota-sensor-1.yaml"
    snippet_file.parent.mkdir()
    made = tinyota("esphome-snippet", "sensor-1", "-c", str(lab.config_path), "-o", str(snippet_file))
    assert made.returncode == 0, made.stderr
    lab.sensor = sensor = EsphomeStandIn(
        snippet_file.read_text(), version="1.0.0", state_dir=lab.tmp / "esphome" / "sensor-1",
        secrets={"tinyota_sensor-1_password": PASSWORDS["sensor-1"],
                 "tinyota_sensor-1_mqtt_password": PASSWORDS["sensor-1"]}).start()
    for device in PASSWORDS:
        lab.wait(lambda d=device: (v := lab.view(d))["online"] and v["installed"] == "1.0.0",
                 f"{device} to be online on 1.0.0")
    assert {d: lab.view(d)["kind"] for d in PASSWORDS} == {"board-1": "tinyota", "plug-1": "tasmota",
                                                           "sensor-1": "esphome"}

    # One release, as a user makes it: the CLI uploads it to the running server.
    image = lab.tmp / "lab-1.1.0.bin"
    image.write_bytes(make_test_image("1.1.0", 96 * 1024, fill=os.urandom(64), platform="esp8266"))
    done = tinyota("release", str(image), "--image", "lab", "--version", "1.1.0", "-c", str(lab.config_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"released lab 1.1.0 on {server.url}"), done.stdout

    # The group's policy started one rollout, three waves of one device each, and it completed.
    def rollout() -> ro.Rollout | None:
        found = server.call(server.service.registry.rollouts)
        return found[-1] if found else None

    lab.wait(lambda: (r := rollout()) is not None and r.state == ro.COMPLETED, "the rollout to complete")
    [made_rollout] = server.call(server.service.registry.rollouts)
    assert made_rollout.started_by == "config" and (made_rollout.image, made_rollout.version) == ("lab", "1.1.0")
    assert made_rollout.waves == 3
    assert [[m.device for m in made_rollout.in_wave(k)] for k in range(3)] == [["board-1"], ["plug-1"], ["sensor-1"]]
    assert ro.counts(made_rollout.members)[ro.SUCCEEDED] == 3, made_rollout.members
    assert [e.what for e in made_rollout.log if e.who == "rollout"][-3:] == [
        "wave 1 done; wave 2 starts", "wave 2 done; wave 3 starts", "completed: 3 device(s) on 1.1.0"]

    # Each attempt succeeded, the server served each the whole image, and the waves really waited:
    # a device was told only after the wave before it was confirmed.
    attempts = {d: lab.attempt(d) for d in PASSWORDS}
    for device, attempt in attempts.items():
        assert (attempt.state, attempt.version, attempt.from_version) == (att.SUCCEEDED, "1.1.0", "1.0.0"), attempt
        assert attempt.download == att.SERVED, attempt
        assert made_rollout.member(device).attempt == attempt.id  # type: ignore[union-attr]
        assert lab.view(device)["installed"] == "1.1.0"
    assert attempts["plug-1"].created >= attempts["board-1"].updated
    assert attempts["sensor-1"].created >= attempts["plug-1"].updated

    # Confirmed by what each device itself said on the broker, after it booted the new image.
    def reported(device: str) -> list[dict[str, Any]]:
        return [json.loads(p) for p in lab.payloads(f"{lab.prefix}/{device}/status") if p]

    lab.wait(lambda: any(r.get("state") == "idle" and r.get("version") == "1.1.0" for r in reported("board-1")),
             "board-1's own report of 1.1.0")
    assert board.firmware() == image.read_bytes() and "running 1.1.0 from " in board.log(), board.tail()
    infos = [json.loads(p) for p in lab.payloads(tasmota.Topics("plug-1").tele("INFO1"))]
    assert [i["Info1"]["Version"] for i in infos] == ["1.0.0(tasmota)", "1.1.0(tasmota)"]
    assert plug.version == "1.1.0" and [f.note for f in plug.fetches] == ["flashed"]
    # (its on_connect report after the reboot; the retained announcement, if it is still there when
    # the device subscribes, is answered idle with the attempt's id as well)
    assert {"state": "idle", "version": "1.1.0", "platform": "esp8266"} in reported("sensor-1")
    assert sensor.version == "1.1.0" and sensor.boots == 2
    assert (sensor.dir / "firmware.bin").read_bytes() == image.read_bytes()

    # Which channel told each: the announcement for the board and the sensor, Tasmota's own
    # commands for the plug, and nothing on the other channel.
    for device in ("board-1", "sensor-1"):
        told = [json.loads(p) for p in lab.payloads(f"{lab.prefix}/{device}/update") if p]
        assert [a["id"] for a in told] == [attempts[device].id], told
        assert told[0]["url"] == f"{server.url}/fw/lab/1.1.0.bin" and told[0]["version"] == "1.1.0"
        assert not any(t.startswith(f"cmnd/{device}/") for t, _ in lab.messages())
    assert sensor.downloads == [f"{server.url}/fw/lab/1.1.0.bin"]
    assert "update " + attempts["board-1"].id + ": downloading " in board.log(), board.tail()
    plug_topics = tasmota.Topics("plug-1")
    [ota_url] = lab.payloads(plug_topics.command("OtaUrl"))
    assert ota_url.decode().startswith(f"{server.url}/t/plug-1/") and ota_url.endswith(b"/firmware.bin")
    assert lab.payloads(plug_topics.command("Upgrade")) == [b"1"]
    assert [p for p in lab.payloads(f"{lab.prefix}/plug-1/update") if p] == []

    # Not one password on the bus, from the first message to the last.
    lab.wiretap.publish(f"{lab.prefix}/test/end", b"end")  # the wiretap's own: all before it is in
    lab.wiretap.wait_for(f"{lab.prefix}/test/end")
    seen = lab.messages()
    assert len(seen) > 20, seen
    secrets = [*PASSWORDS.values(), SERVER_PW, ADMIN_PW, WIRETAP_PW]
    for topic, payload in seen:
        for secret in secrets:
            assert secret not in topic and secret.encode() not in payload, (topic, payload[:200])
