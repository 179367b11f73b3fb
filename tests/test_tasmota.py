"""Tasmota devices against a real mosquitto and a real server: told with OtaUrl + Upgrade 1,
downloading over real HTTP with a single-use token, confirmed by what they publish.

The device is ``tests/tasmota_standin.py`` (Tasmota cannot run here; its docstring says which of
Tasmota's docs and source each behaviour comes from).
"""

from __future__ import annotations

import gzip
import http.client
import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BASE_CONFIG, Mosquitto, Probe, ServerThread, tinyota, wait_until, write_config
from tests.tasmota_standin import TasmotaStandIn
from tinyota_mqtt.config import parse_config
from tinyota_mqtt.core import attempts as att
from tinyota_mqtt.core import tasmota
from tinyota_mqtt.core import tokens as tk
from tinyota_mqtt.core.image import make_test_image
from tinyota_mqtt.core.passwords import Password, Secret
from tinyota_mqtt.errors import ConfigError
from tinyota_mqtt.mqtt.access import Access, TasmotaLogin
from tinyota_mqtt.store import FirmwareStore

# conftest's server, mqtt and homeassistant sections, with a fleet of plugs.
CONFIG = BASE_CONFIG.split("images:")[0] + """\
images:
  plug: {{platform: esp8266}}
  plug-minimal: {{platform: esp8266}}
groups:
  plugs: {{image: plug, kind: tasmota, minimal_image: plug-minimal, auto_update: false,
          attempt_timeout: {timeout}, confirm: {confirm}, retry_backoff: 1s}}
devices:
  plug-1: {{group: plugs, topic: {prefix}-plug-1, password: pw-plug-1}}
  plug-2: {{group: plugs, topic: {prefix}-plug-2, password: pw-plug-2}}
  sketch-1: {{group: plugs, kind: tinyota, password: pw-sketch-1}}  # an esp_client board, same image
"""
FULL_SIZE = 300_000
MINIMAL_SIZE = 60_000
PASSWORDS = ("pw-plug-1", "pw-plug-2", "pw-sketch-1", "admin-secret")


def release_file(config: Any, image: str, version: str, size: int, *, gzipped: bool = True) -> Any:
    """A release as Tasmota ships it for the ESP8266: a gzipped app image (.bin.gz)."""
    raw = make_test_image(version, size, fill=os.urandom(64), platform="esp8266")
    path = config.server.store.parent / f"{image}-{version}.bin{'.gz' if gzipped else ''}"
    path.write_bytes(gzip.compress(raw) if gzipped else raw)
    return FirmwareStore(config.server.store).add_file(path, image, version, platform="esp8266")


class Fleet:
    def __init__(self, server: ServerThread, broker: Mosquitto, prefix: str, everything: Probe) -> None:
        self.server, self.broker, self.prefix, self.everything = server, broker, prefix, everything
        self.devices: list[TasmotaStandIn] = []

    def device(self, device_id: str, **kw: Any) -> TasmotaStandIn:
        standin = TasmotaStandIn(self.broker.url, f"{self.prefix}-{device_id}", **kw).start()
        self.devices.append(standin)
        return standin

    def attempts(self, device_id: str) -> list[att.Attempt]:
        return list(self.server.call(self.server.service.registry.history, device_id))

    def outcome(self, device_id: str, state: str, timeout: float = 30) -> att.Attempt:
        def ended() -> att.Attempt | None:
            found = self.attempts(device_id)
            return found[0] if found and found[0].state == state else None
        return wait_until(ended, timeout, f"{device_id}'s attempt to be {state} (have "
                          f"{[(a.state, a.error) for a in self.attempts(device_id)]})")

    def install(self, device_id: str, version: str) -> att.Attempt:
        started = self.server.call(self.server.service.install, [device_id], version)
        return started[0]  # type: ignore[no-any-return]

    def settled(self) -> None:
        """Everything the server published so far has reached the probe: one client's messages
        arrive in order, so once a marker published after them is in, so are they."""
        marker = uuid.uuid4().hex.encode()
        self.server.call(lambda: self.server.service.publisher.publish(f"{self.prefix}/test/marker", marker,
                                                                       retain=False))
        self.everything.wait_for(f"{self.prefix}/test/marker", lambda m: bytes(m.payload) == marker, timeout=30)

    def commands(self, device_id: str, name: str) -> list[bytes]:
        """What the server commanded, up to now (every command of the server's is in)."""
        self.settled()
        topic = tasmota.Topics(f"{self.prefix}-{device_id}").command(name)
        return [bytes(m.payload) for m in self.everything.received(topic)]


@pytest.fixture
def fleet(tmp_path: Path, broker: Mosquitto, prefix: str, servers: Any, probes: Any,
          request: pytest.FixtureRequest) -> Iterator[Fleet]:
    confirm = getattr(request, "param", "download+report")
    everything = probes(broker.url).subscribe("#")  # every message on the broker, for the no-secret check
    # The session's broker holds other tests' retained messages: let the probe take them all in
    # before anything is timed against it.
    mark = f"{prefix}/test/ready"
    everything.publish(mark, b"1")
    everything.wait_for(mark, timeout=30)
    path = write_config(tmp_path, mqtt=broker.url, prefix=prefix, text=CONFIG, confirm=confirm)
    server = servers(path)
    wait_until(lambda: server.service.ready, 15, "the server to read the broker's retained state")
    fleet = Fleet(server, broker, prefix, everything)
    yield fleet
    for standin in fleet.devices:
        standin.stop()


def no_secret_on_the_bus(fleet: Fleet) -> None:
    fleet.settled()
    with fleet.everything.lock:
        seen = [(m.topic, bytes(m.payload)) for m in fleet.everything.messages]
    assert seen
    for topic, payload in seen:
        for secret in PASSWORDS:
            assert secret.encode() not in payload and secret not in topic, (topic, payload[:200])


# -- the whole update -----------------------------------------------------------------------------

def test_a_tasmota_device_is_updated_and_confirmed_by_what_it_publishes(fleet: Fleet) -> None:
    plug = fleet.device("plug-1", version="14.3.0")
    wait_until(lambda: fleet.server.view("plug-1")["installed"] == "14.3.0", 15, "the version from INFO1")
    assert fleet.server.view("plug-1")["kind"] == "tasmota"
    release_file(fleet.server.config, "plug", "14.4.0", FULL_SIZE)
    attempt = fleet.install("plug-1", "14.4.0")

    done = fleet.outcome("plug-1", att.SUCCEEDED)
    assert done.id == attempt.id and done.download == att.SERVED  # download+report: the token route counted
    assert plug.version == "14.4.0" and plug.image == "tasmota"
    view = fleet.server.view("plug-1")
    assert view["installed"] == "14.4.0" and view["online"] is True
    # Told with Tasmota's own commands, in order, neither retained.
    url = fleet.commands("plug-1", "OtaUrl")[0].decode()
    assert fleet.commands("plug-1", "Upgrade") == [b"1"]
    assert url.startswith(f"{fleet.server.url}/t/plug-1/") and url.endswith("/firmware.bin.gz")
    assert len(url) <= tasmota.OTAURL_LIMIT
    for name in ("OtaUrl", "Upgrade"):
        topic = tasmota.Topics(f"{fleet.prefix}-plug-1").command(name)
        assert all(not m.retain for m in fleet.everything.received(topic))
    assert [f.note for f in plug.fetches] == ["flashed"]
    no_secret_on_the_bus(fleet)


def test_a_failed_tasmota_upgrade_is_reported_with_tasmotas_reason_and_retried_as_a_new_attempt(
        fleet: Fleet) -> None:
    plug = fleet.device("plug-1", version="14.3.0", unreachable=True, setoption4=True)
    wait_until(lambda: fleet.server.view("plug-1")["online"], 10, "the server to see it online")
    release_file(fleet.server.config, "plug", "14.4.0", FULL_SIZE)
    first = fleet.install("plug-1", "14.4.0")
    failed = fleet.outcome("plug-1", att.FAILED)
    assert failed.id == first.id and failed.error == "Tasmota: HTTP error: connection failed"  # its own words
    plug.unreachable = False
    # "connection" is a reason the device could not help: the announcer tries again after the
    # group's back-off, as a new attempt with a new token (a device never retries an id itself).
    done = fleet.outcome("plug-1", att.SUCCEEDED)
    assert done.id != first.id
    assert [a.state for a in fleet.attempts("plug-1")] == [att.SUCCEEDED, att.FAILED]
    urls = fleet.commands("plug-1", "OtaUrl")
    assert len(urls) == 2 and urls[0] != urls[1]
    assert plug.version == "14.4.0"


def test_a_device_that_cannot_flash_what_it_took_fails_at_its_first_retry_and_is_not_retried(fleet: Fleet) -> None:
    plug = fleet.device("plug-1", version="14.3.0", flash_error="Verify Bin Header Failed")
    wait_until(lambda: fleet.server.view("plug-1")["online"], 10, "the server to see it online")
    release_file(fleet.server.config, "plug", "14.4.0", FULL_SIZE)
    attempt = fleet.install("plug-1", "14.4.0")
    failed = fleet.outcome("plug-1", att.FAILED)
    assert failed.id == attempt.id and "took the full image whole and asked for it again" in (failed.error or "")
    # Tasmota's own last word (the refusal of its retry) joins the server's reason.
    wait_until(lambda: "Tasmota: Forbidden (403)" in (fleet.server.view("plug-1")["last_error"] or ""), 15,
               "Tasmota's final Upgrade reply")
    fleet.server.call(fleet.server.service.tick)
    fleet.server.call(fleet.server.service.announcer.retry_due)
    assert [a.id for a in fleet.attempts("plug-1")] == [attempt.id]  # the image's fault: no retry
    assert len(fleet.commands("plug-1", "OtaUrl")) == 1
    assert [f.status for f in plug.fetches][:2] == [200, 403]  # the whole image once, then refused


def test_the_two_step_upgrade_serves_the_minimal_image_then_the_full_one_on_the_same_attempt(fleet: Fleet) -> None:
    full = release_file(fleet.server.config, "plug", "14.4.0", FULL_SIZE)
    minimal = release_file(fleet.server.config, "plug-minimal", "14.4.0", MINIMAL_SIZE)
    assert minimal.size < full.size
    plug = fleet.device("plug-1", version="14.3.0", free_space=full.size - 1, minimal_free_space=2 * full.size)
    wait_until(lambda: fleet.server.view("plug-1")["online"], 10, "the server to see it online")
    attempt = fleet.install("plug-1", "14.4.0")

    done = fleet.outcome("plug-1", att.SUCCEEDED, timeout=45)
    assert done.id == attempt.id
    url = fleet.commands("plug-1", "OtaUrl")[0].decode()
    assert [(f.url, f.note) for f in plug.fetches] == [
        (url, "too big"),  # the headers say it does not fit: Tasmota asks for the minimal file
        (tasmota.minimal_url(url), "flashed"),
        (url, "flashed"),  # the minimal build fetches the full image, same token
    ]
    assert plug.version == full.version and plug.image == "tasmota" and plug.boots == 3
    assert fleet.commands("plug-1", "Upgrade") == [b"1"]  # one command, one attempt, both steps


def test_a_server_restart_between_the_two_steps_picks_the_update_up_where_the_device_is(
        fleet: Fleet, servers: Any) -> None:
    full = release_file(fleet.server.config, "plug", "14.4.0", FULL_SIZE)
    release_file(fleet.server.config, "plug-minimal", "14.4.0", MINIMAL_SIZE)
    hold = threading.Event()
    plug = fleet.device("plug-1", version="14.3.0", free_space=full.size - 1, minimal_free_space=2 * full.size,
                        hold_minimal=hold)
    wait_until(lambda: fleet.server.view("plug-1")["online"], 10, "the server to see it online")
    attempt = fleet.install("plug-1", "14.4.0")
    wait_until(lambda: plug.image == "minimal" and fleet.server.view("plug-1")["attempt"]["state"] == att.FLASHING,
               30, "the first step")
    fleet.server.stop()  # its tokens die with it
    hold.set()  # the minimal build's download finds no server, and it gives up
    wait_until(lambda: len(plug.fetches) == 2 + 4, 30, "the minimal build's four tries")
    again = servers(fleet.server.config_path)
    fleet.server = again
    done = fleet.outcome("plug-1", att.SUCCEEDED)
    assert done.id == attempt.id and plug.version == "14.4.0" and plug.image == "tasmota"
    assert again.call(again.service.registry.device, "plug-1").version == "14.4.0"


def test_a_device_offline_when_told_is_told_again_when_it_comes_online(fleet: Fleet) -> None:
    release_file(fleet.server.config, "plug", "14.4.0", FULL_SIZE)
    fleet.install("plug-1", "14.4.0")  # nobody listens yet: the commands are not retained
    wait_until(lambda: fleet.commands("plug-1", "Upgrade"), 10, "the first Upgrade command")
    plug = fleet.device("plug-1", version="14.3.0")
    fleet.outcome("plug-1", att.SUCCEEDED)
    assert plug.version == "14.4.0"
    assert len(fleet.commands("plug-1", "OtaUrl")) == 2


def test_one_rollout_updates_a_tasmota_plug_and_an_esp_client_board_each_by_what_it_reports(
        fleet: Fleet) -> None:
    from tinyota_mqtt.core import rollout as ro
    from tinyota_mqtt.mqtt.simulator import devices_for

    config = fleet.server.config
    board = devices_for(config, None, "plugs", fleet.broker.url, "14.3.0")
    board = [sim for sim in board if sim.s.device_id == "sketch-1"]
    board[0].start()
    try:
        plug = fleet.device("plug-1", version="14.3.0")
        wait_until(lambda: fleet.server.view("plug-1")["online"] and fleet.server.view("sketch-1")["installed"]
                   == "14.3.0", 15, "both devices")
        release_file(config, "plug", "14.4.0", FULL_SIZE)
        policy = ro.Policy(waves=(ro.WaveSpec(devices=("sketch-1",)), ro.parse_wave("rest")))
        rollout = fleet.server.call(lambda: fleet.server.service.rollouts.start(
            "plug", "14.4.0", groups=["plugs"], policy=policy, who="test"))
        for device in ("sketch-1", "plug-1"):
            fleet.outcome(device, att.SUCCEEDED)
        assert plug.version == "14.4.0" and board[0].version == "14.4.0"
        # The board was told by its retained announcement, the plug by Tasmota's commands.
        fleet.settled()
        assert fleet.everything.last(f"{fleet.prefix}/sketch-1/update") is not None
        assert fleet.everything.last(f"{fleet.prefix}/plug-1/update") is None
        assert fleet.commands("plug-1", "Upgrade") == [b"1"]
        def counted() -> bool:  # the rollout counts both successes (plug-2 never came online)
            now = fleet.server.call(fleet.server.service.registry.rollout, rollout.id)
            return all(now.member(d).state == ro.SUCCEEDED for d in ("sketch-1", "plug-1"))
        wait_until(counted, 15, "the rollout to count both")
        no_secret_on_the_bus(fleet)
    finally:
        board[0].stop()


# -- the token ------------------------------------------------------------------------------------

def get(server: ServerThread, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, str]:
    conn = http.client.HTTPConnection("127.0.0.1", server.server.port, timeout=10)
    conn.request("GET", path, headers=headers or {})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, body, resp.reason


def told_url(fleet: Fleet, device_id: str, count: int = 1) -> str:
    found = wait_until(lambda: len(fleet.commands(device_id, "OtaUrl")) >= count and fleet.commands(
        device_id, "OtaUrl"), 10, "an OtaUrl command")
    return str(found[count - 1].decode())


def test_a_token_is_single_use_and_only_for_its_device(fleet: Fleet, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    release_file(fleet.server.config, "plug", "14.4.0", FULL_SIZE)
    fleet.install("plug-1", "14.4.0")
    path = told_url(fleet, "plug-1").split(fleet.server.url, 1)[1]
    token = path.split("/")[3]
    status, body, _ = get(fleet.server, path)
    assert status == 200 and len(body) > 0
    status, _, reason = get(fleet.server, path)  # replayed
    assert status == 403 and "used already" in reason
    other = path.replace("/t/plug-1/", "/t/plug-2/")
    status, _, reason = get(fleet.server, other)  # another device's URL
    assert status == 403 and "not plug-2's" in reason
    assert get(fleet.server, path.replace(token, "x" * len(token)))[0] == 403  # made up
    assert get(fleet.server, "/fw/plug/14.4.0.bin")[0] == 401  # a token opens nothing else
    assert token not in caplog.text and tk.mask(token) in caplog.text


def test_a_token_expires_and_ends_with_its_attempt(fleet: Fleet, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    release_file(fleet.server.config, "plug", "14.4.0", FULL_SIZE)
    release_file(fleet.server.config, "plug", "14.5.0", FULL_SIZE)
    fleet.install("plug-1", "14.4.0")
    first = told_url(fleet, "plug-1").split(fleet.server.url, 1)[1]
    fleet.install("plug-1", "14.5.0")  # another release: a new attempt, a new token
    second = told_url(fleet, "plug-1", 2).split(fleet.server.url, 1)[1]
    status, _, reason = get(fleet.server, first)
    assert status == 403 and "revoked" in reason
    tokens = fleet.server.service.tokens
    real = tokens.clock
    tokens.clock = lambda: real() + tk.TTL + 1  # the TTL passes
    try:
        status, _, reason = get(fleet.server, second)
    finally:
        tokens.clock = real
    assert status == 403 and "expired" in reason
    fleet.server.call(fleet.server.service.cancel, ["plug-1"])
    status, _, reason = get(fleet.server, second)
    assert status == 403 and "revoked" in reason
    for url in (first, second):
        assert url.split("/")[3] not in caplog.text


def test_malformed_token_requests_get_4xx_never_500(fleet: Fleet) -> None:
    for path in ("/t/plug-1/abc/firmware.bin", "/t/plug-1/abc/firmware-minimal.bin.gz", "/t/nobody/abc/firmware",
                 "/t/plug-1/abc/other.bin", "/t/plug-1//firmware.bin", "/t/%00/abc/firmware.bin"):
        status = get(fleet.server, path)[0]
        assert 400 <= status < 500, (path, status)
    assert get(fleet.server, "/t/plug-1/abc/firmware.bin", {"x-ESP8266-free-space": "lots"})[0] == 403


# -- what the device says -------------------------------------------------------------------------

def test_an_unconfigured_tasmota_on_the_broker_is_listed_with_its_version(fleet: Fleet) -> None:
    stray = fleet.device("stray", version="13.4.0")
    view = wait_until(lambda: fleet.server.view(f"{fleet.prefix}-stray")["installed"] == "13.4.0"
                      and fleet.server.view(f"{fleet.prefix}-stray"), 15, "the unconfigured device's listing")
    assert view["known"] is False and view["kind"] == "tasmota"
    assert f"{fleet.prefix}-stray" in fleet.server.call(fleet.server.service.device_ids)
    snippet = f"  {fleet.prefix}-stray: {{kind: tasmota, group: plugs, mac: {stray.mac}}}"
    assert view["adopt"] == "devices:\n" + snippet
    # `tinyota status` lists it and prints what to add; nothing writes the config for the user.
    before = fleet.server.config_path.read_bytes()
    shown = tinyota("status", "-c", str(fleet.server.config_path))
    assert shown.returncode == 0, shown.stderr
    line = next(row for row in shown.stdout.splitlines() if row.startswith(f"{fleet.prefix}-stray "))
    assert "(unknown tasmota)" in line and "13.4.0" in line
    assert f"{fleet.prefix}-stray runs Tasmota 13.4.0 and is not in the config" in shown.stdout
    assert snippet in shown.stdout
    assert fleet.server.config_path.read_bytes() == before


def test_status_2_is_asked_when_a_device_comes_online_with_an_unknown_version(fleet: Fleet) -> None:
    fleet.device("plug-2", version="14.1.0")
    wait_until(lambda: fleet.commands("plug-2", "Status") == [b"2"], 10, "Status 2")
    wait_until(lambda: fleet.everything.received(tasmota.Topics(f"{fleet.prefix}-plug-2").stat("STATUS2")),
               30, "the STATUS2 reply")
    assert fleet.server.view("plug-2")["installed"] == "14.1.0"


def test_forged_and_malformed_tasmota_messages_are_logged_once_and_change_nothing(
        fleet: Fleet, caplog: pytest.LogCaptureFixture) -> None:
    where = tasmota.Topics(f"{fleet.prefix}-plug-1")
    forger = Probe(fleet.broker.url).wait_connected()
    try:
        for _ in range(3):
            forger.publish(where.tele("INFO1"), b"{not json")
        forger.publish(where.tele("LWT"), b"Maybe")
        forger.publish(f"{fleet.prefix}/plug-1/status", json.dumps({"state": "idle", "version": "9.9.9"}))
        forger.publish(where.stat("RESULT"), json.dumps({"Upgrade": "Failed nothing was asked"}))
        wait_until(lambda: "ignored Tasmota tele/LWT" in caplog.text, 10, "the LWT complaint")
        wait_until(lambda: "a Tasmota device reports on its own topics" in caplog.text, 10, "the tinyota complaint")
    finally:
        forger.close()
    assert caplog.text.count("ignored Tasmota tele/INFO1") == 1
    view = fleet.server.view("plug-1")
    assert view["installed"] is None and view["online"] is None and view["attempt"] is None


# -- the documented mosquitto setup ------------------------------------------------------------------

def documented_acl() -> str:
    """The ACL of docs/mosquitto.md: the TinyOTA block and the Tasmota device block after it."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "mosquitto.md").read_text()
    blocks = re.findall(r"```\n(# TinyOTA ACL\n.*?|user plug-1\n.*?)```", text, re.S)
    assert len(blocks) == 2, "docs/mosquitto.md lost its ACL blocks"
    return "\n".join(blocks)


def test_the_documented_mosquitto_acl_lets_a_tasmota_update_through_and_nothing_else(
        tmp_path: Path, servers: Any, probes: Any) -> None:
    mosq = Mosquitto(tmp_path / "mosquitto", users={"tinyota": "srv-pw", "plug-1": "pw-plug-1",
                                                   "plug-2": "pw-plug-2"},
                     acl=documented_acl()).start()
    try:
        text = CONFIG.replace("  client_id: tinyota-{prefix}\n", "  client_id: tinyota-{prefix}\n"
                              "  username: tinyota\n  password: srv-pw\n")
        text = text.replace("discovery_prefix: {prefix}-ha", "discovery_prefix: homeassistant")
        text = text.replace("topic: {prefix}-plug-1", "topic: plug-1, mac: A4CF12ABCDEF")
        server = servers(write_config(tmp_path, mqtt=mosq.url, prefix="tinyota", text=text))
        wait_until(lambda: server.service.ready, 15, "the server to read the broker's retained state")
        plug = TasmotaStandIn(mosq.url, "plug-1", mac="A4CF12ABCDEF", username="plug-1",
                              password="pw-plug-1").start()
        try:
            wait_until(lambda: server.view("plug-1")["installed"] == "14.3.0", 15, "its version")
            release_file(server.config, "plug", "14.4.0", FULL_SIZE)
            server.call(server.service.install, ["plug-1"], "14.4.0")
            wait_until(lambda: server.view("plug-1")["installed"] == "14.4.0"
                       and server.view("plug-1")["attempt"]["state"] == att.SUCCEEDED, 30, "the update")
            # The device may not speak for another one, nor read another's commands.
            plug.publish("stat/plug-2/RESULT", {"Upgrade": "Failed forged"})
            plug.publish(f"{tasmota.DISCOVERY_PREFIX}/000000000000/config", b"{}", retain=True)
            spy = probes(mosq.url, username="plug-1", password="pw-plug-1", client_id="spy")
            spy.subscribe("cmnd/#")  # mosquitto grants the subscription but delivers only what the ACL allows
            for other in ("plug-2", "plug-1"):
                server.call(lambda o=other: server.service.publisher.publish(f"cmnd/{o}/Status", b"2", retain=False))
            spy.wait_for("cmnd/plug-1/Status")
            assert not spy.received("cmnd/plug-2/Status")
            watcher = probes(mosq.url, username="tinyota", password="srv-pw", client_id="watch")
            watcher.subscribe("tasmota/discovery/#")
            watcher.wait_for("tasmota/discovery/A4CF12ABCDEF/config")
            assert not watcher.received("tasmota/discovery/000000000000/config")
        finally:
            plug.stop()
    finally:
        mosq.stop()


# -- pure rules ----------------------------------------------------------------------------------
# (core/tasmota.py's own rules are in test_device_rules.py, where the mutation run reaches them)

def test_token_rules() -> None:
    grant = tk.Grant(device="d", image="i", version="1.0.0", sha256="s", attempt="a", expires=100.0)
    assert tk.refusal(grant, "d", tk.FULL, 99.0) is None
    assert tk.refusal(grant, "d", tk.FULL, 100.0) == "the token expired"
    assert tk.refusal(grant, "e", tk.FULL, 0.0) == "the token is not e's"
    assert tk.refusal(tk.served(grant, tk.FULL), "d", tk.FULL, 0.0) is not None
    assert tk.refusal(grant, "d", tk.MINIMAL, 0.0) == "no minimal image is released for this update"
    assert tk.refusal(tk.revoked(grant, "cancelled"), "d", tk.FULL, 0.0) == "the token was revoked (cancelled)"
    assert not tk.spends(tk.FULL, size=10, free_space=5)  # the two-step's probe
    assert tk.spends(tk.FULL, size=10, free_space=None) and tk.spends(tk.MINIMAL, size=10, free_space=5)
    assert tk.mask_urls("{\"OtaUrl\":\"http://h/t/plug-1/AbCdEfGh/firmware.bin\"}") == \
        "{\"OtaUrl\":\"http://h/t/plug-1/AbCd…/firmware.bin\"}"


def test_the_embedded_broker_holds_a_tasmota_login_to_tasmotas_own_topics() -> None:
    login = TasmotaLogin("cmnd/plug/", "stat/plug/", "tele/plug/", "cmnd/tasmotas/", "A4CF12ABCDEF")
    access = Access(prefix="tinyota", discovery_prefix="homeassistant", status_topic="homeassistant/status",
                    devices={"plug-1": Password.parse("pw")}, server_password=Secret("s"), server_client_id="srv",
                    tasmota={"plug-1": login})
    assert access.may_subscribe("plug-1", "cmnd/plug/#") and access.may_subscribe("plug-1", "cmnd/tasmotas/#")
    assert access.may_publish("plug-1", "stat/plug/RESULT") and access.may_publish("plug-1", "tele/plug/LWT")
    assert access.may_publish("plug-1", "tasmota/discovery/A4CF12ABCDEF/config")
    assert not access.may_publish("plug-1", "tasmota/discovery/000000000000/config")
    assert not access.may_publish("plug-1", "stat/other/RESULT") and not access.may_subscribe("plug-1", "cmnd/#")
    assert not access.may_publish("plug-1", "tinyota/plug-1/status")
    assert not access.may_subscribe("plug-1", "tinyota/plug-1/update")
    assert access.may_publish("tinyota.server", "cmnd/plug/OtaUrl")
    assert access.may_subscribe("tinyota.server", "stat/plug/+") and access.may_subscribe(
        "tinyota.server", "tasmota/discovery/+/config")
    assert not access.may_publish("tinyota.server", "stat/plug/RESULT")  # the device's to write


# -- config ---------------------------------------------------------------------------------------

BASE = """\
server: {{public_url: "{url}"}}
images:
  plug: {{platform: esp8266}}
  small: {{platform: esp8266}}
  big: {{platform: esp32}}
groups:
  plugs: {{image: plug, kind: tasmota, minimal_image: {minimal}}}
  lights: {{image: big}}
devices:
{devices}
"""


def problems(devices: str, *, url: str = "http://192.168.1.10:8000", minimal: str = "small") -> list[str]:
    try:
        parse_config(BASE.format(url=url, minimal=minimal, devices=devices), "config.yaml")
    except ConfigError as exc:
        return list(exc.problems)
    return []


def test_kinds_come_from_the_group_and_the_device_wins() -> None:
    config = parse_config(BASE.format(url="http://192.168.1.10:8000", minimal="small", devices=(
        "  plug-1: {group: plugs}\n  plug-2: {group: plugs, kind: esphome}\n  lamp: {group: lights}\n"
        "  plug-3: {group: plugs, topic: tasmota_ABC, full_topic: 'tasmota/%topic%/%prefix%/'}")))
    kinds = {d.id: d.kind for d in config.devices.values()}
    assert kinds == {"plug-1": "tasmota", "plug-2": "esphome", "lamp": "tinyota", "plug-3": "tasmota"}
    assert config.devices["plug-1"].full_topic == tasmota.DEFAULT_FULL_TOPIC
    assert config.devices["plug-3"].tasmota_topic == "tasmota_ABC"
    assert tasmota.Topics("tasmota_ABC", "tasmota/%topic%/%prefix%/").command("Upgrade") == \
        "tasmota/tasmota_ABC/cmnd/Upgrade"


def test_config_errors_name_the_line_and_the_key() -> None:
    found = problems("  plug-1: {group: plugs, kind: tasmotta}\n  lamp: {group: lights, topic: x}\n"
                     "  plug-2: {group: plugs, topic: 'a/b'}\n  plug-3: {group: plugs, full_topic: '%topic%/'}\n"
                     "  plug-4: {group: plugs, mac: nope}")
    assert "[config.yaml:10] devices.plug-1.kind: 'tasmotta' is not a valid device kind. Did you mean 'tasmota'?" \
        in found
    assert any(p.startswith("[config.yaml:11] devices.lamp.topic: 'topic' is a Tasmota setting") for p in found)
    assert any(p.startswith("[config.yaml:12] devices.plug-2.topic: 'a/b' must be one MQTT topic level")
               for p in found)
    assert any(p.startswith("[config.yaml:13] devices.plug-3.full_topic:") and "%prefix%" in p for p in found)
    assert any(p.startswith("[config.yaml:14] devices.plug-4.mac: 'nope' is not a MAC address") for p in found)


def test_a_url_too_long_for_otaurl_is_refused_at_config_time() -> None:
    long_url = "http://tinyota-server.home.example.internal.lan:8000/some/proxy/path"
    found = problems("  plug-1: {group: plugs}", url=long_url)
    assert len(found) == 1 and found[0].startswith("[config.yaml:10] devices.plug-1: its download URL would be")
    assert "OtaUrl keeps only 100" in found[0]
    assert problems("  plug-1: {group: plugs}") == []


def test_two_tasmota_devices_on_one_topic_and_a_bad_minimal_image_are_refused() -> None:
    found = problems("  plug-1: {group: plugs, topic: t}\n  plug-2: {group: plugs, topic: t}", minimal="big")
    assert any("devices.plug-2: uses the same Tasmota topics" in p for p in found)
    assert any("groups.plugs.minimal_image: image 'big' is for esp32" in p for p in found)
    assert any("groups.plugs.minimal_image: unknown image 'nosuch'" in p
               for p in problems("  plug-1: {group: plugs}", minimal="nosuch"))


def test_discovery_messages_pass_hatasmotas_schema() -> None:
    from hatasmota.discovery import TasmotaDiscoveryMsg, get_device_config

    standin = TasmotaStandIn("mqtt://127.0.0.1:9", "plug", mac="A4CF12ABCDEF")
    info = get_device_config(TasmotaDiscoveryMsg(json.loads(standin.discovery())))
    assert info["mac"] == "A4CF12ABCDEF" and info["sw"] == "14.3.0"
