"""Staged rollouts against a real mosquitto and simulated devices: halts, windows, controls, restarts.

The server runs in this process (ServerThread) or as ``tinyota serve`` (for kill -9); devices are
the project's SimDevice, some failing on purpose (``fail=True``: they download, then report a
failed flash, as a board with a bad image does).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BASE_CONFIG, Mosquitto, ServerThread, free_port, release, tinyota, wait_until, write_config
from tinyota_mqtt.apiclient import AdminClient
from tinyota_mqtt.config import load_config, parse_config
from tinyota_mqtt.core import rollout as ro
from tinyota_mqtt.errors import ConfigError
from tinyota_mqtt.mqtt.simulator import SimDevice, devices_for

# The suite's server, mqtt and homeassistant sections, with images and groups of its own.
CONFIG = BASE_CONFIG.split("images:")[0] + """\
images:
  kitchen: {{platform: esp8266}}
groups:
  lights:
    image: kitchen
    auto_update: true
    attempt_timeout: {timeout}
    rollout:
      waves: [CANARY, 50%, rest]
      halt_at: 20%
ROLLOUT_EXTRA
  manual:
    image: kitchen
    attempt_timeout: {timeout}
devices:
DEVICES
"""


def config_text(lights: int = 6, manual: int = 3, extra: str = "") -> str:
    devices = [f"  light-{i}: {{{{group: lights, password: pw-light-{i}}}}}" for i in range(lights)]
    devices += [f"  desk-{i}: {{{{group: manual, password: pw-desk-{i}}}}}" for i in range(manual)]
    text = CONFIG.replace("ROLLOUT_EXTRA\n", extra).replace("DEVICES\n", "\n".join(devices) + "\n")
    return text.replace("CANARY", "[light-0]" if lights else "1")


def admin(port: int) -> AdminClient:
    return AdminClient(f"http://127.0.0.1:{port}", "admin", "admin-secret", timeout=20)


def start_sims(sims: list[SimDevice]) -> None:
    for sim in sims:
        sim.start()


@pytest.fixture
def sims() -> Any:
    made: list[SimDevice] = []
    yield made
    for sim in made:
        sim.stop()


def announced_to(server: ServerThread, device: str) -> list[Any]:
    return list(server.call(server.service.registry.history, device))


def test_a_failing_wave_halts_with_its_reason_and_the_rest_stay_untouched(
        tmp_path: Path, broker: Mosquitto, prefix: str, servers: Any, sims: list[SimDevice], probes: Any) -> None:
    """Canary light-0 succeeds; wave 2 (light-1, light-2) has a bad board; wave 3 is never told."""
    path = write_config(tmp_path, mqtt=broker.url, prefix=prefix, text=config_text())
    config = load_config(path)
    probe = probes(broker.url).subscribe(f"{prefix}/server/rollout/#").subscribe(f"{prefix}-ha/sensor/#")
    sims += devices_for(config, None, "lights", broker.url, "1.0.0", fail={"light-2"})
    start_sims(sims)
    server = servers(path)
    wait_until(lambda: all(server.view(s.s.device_id)["installed"] == "1.0.0" for s in sims), 20, "hello from all")
    release(config, "kitchen", "2.0.0")  # the group's rollout: policy takes it from here
    message = probe.wait_for(f"{prefix}/server/rollout/image/kitchen",
                             lambda m: json.loads(m.payload)["state"] == "halted", timeout=60)
    state = json.loads(message.payload)
    assert state["started_by"] == "config" and state["wave"] == 2
    assert "light-2: flash write failed" in state["reason"]
    waves = state["waves"]
    assert waves[0]["succeeded"] == 1 and waves[1]["failed"] == 1
    assert waves[2]["devices"] == 3 and waves[2]["waiting"] == 3
    for device in ("light-3", "light-4", "light-5"):
        assert announced_to(server, device) == []
        assert server.view(device)["installed"] == "1.0.0" and server.view(device)["announced"] is None
        assert probe.last(f"{prefix}/{device}/update") is None
    rollouts = admin(server.server.port).request("GET", "/api/rollouts")
    assert [r["state"] for r in rollouts] == ["halted"]
    # The same state on the per-rollout topic, and Home Assistant's sensor for the image.
    by_id = json.loads(probe.wait_for(f"{prefix}/server/rollout/{state['id']}").payload)
    assert by_id["state"] in ("running", "halted")
    discovery = json.loads(probe.wait_for(f"{prefix}-ha/sensor/tinyota_rollout_kitchen/config").payload)
    assert discovery["state_topic"] == f"{prefix}/server/rollout/image/kitchen"


def test_the_window_keeps_announcements_out(tmp_path: Path, broker: Mosquitto, prefix: str, servers: Any,
                                            sims: list[SimDevice], probes: Any) -> None:
    """The server's rollout clock is moved by hand: closed → nothing; open → wave 1; closed again →
    an announcement no device has started is withdrawn."""
    extra = "      window: Mon-Fri 02:00+3h Europe/Berlin\n"
    path = write_config(tmp_path, mqtt=broker.url, prefix=prefix, text=config_text(lights=4, extra=extra))
    config = load_config(path)
    server = servers(path)
    probe = probes(broker.url).subscribe(f"{prefix}/+/update")
    from datetime import datetime
    from zoneinfo import ZoneInfo

    berlin = ZoneInfo("Europe/Berlin")
    clock = [datetime(2026, 12, 1, 20, 0, tzinfo=berlin).timestamp()]  # Tuesday evening
    server.call(setattr, server.service.rollouts, "clock", lambda: clock[0])
    release(config, "kitchen", "2.0.0")
    rollout = wait_until(lambda: server.call(server.service.registry.rollouts), 10, "the automatic rollout")[0]
    for _ in range(3):
        server.call(server.service.tick)
    assert server.call(server.service.registry.rollout, rollout.id).state == ro.SCHEDULED
    assert all(announced_to(server, f"light-{i}") == [] for i in range(4))
    body = admin(server.server.port).request("GET", f"/api/rollouts/{rollout.id}")
    assert body["window_open"] is False
    assert body["next_window"] == datetime(2026, 12, 2, 2, 0, tzinfo=berlin).timestamp()

    clock[0] = datetime(2026, 12, 2, 2, 30, tzinfo=berlin).timestamp()  # inside; no device is running
    server.call(server.service.tick)
    probe.wait_for(f"{prefix}/light-0/update", lambda m: bool(m.payload))
    assert server.call(server.service.registry.rollout, rollout.id).state == ro.RUNNING

    clock[0] = datetime(2026, 12, 2, 5, 0, tzinfo=berlin).timestamp()  # closed again
    server.call(server.service.tick)
    probe.wait_for(f"{prefix}/light-0/update", lambda m: m.payload == b"")  # withdrawn: nobody started it
    after = server.call(server.service.registry.rollout, rollout.id)
    assert after.member("light-0").state == ro.WAITING
    assert [a.state for a in announced_to(server, "light-0")] == ["cancelled"]
    assert all(announced_to(server, f"light-{i}") == [] for i in range(1, 4))

    # The next night the canary is told again and, running now, updates; the window then lets wave 2 go.
    sims += devices_for(config, None, "lights", broker.url, "1.0.0")
    start_sims(sims)
    clock[0] = datetime(2026, 12, 3, 2, 0, tzinfo=berlin).timestamp()

    def progressed() -> bool:
        server.call(server.service.tick)
        r = server.call(server.service.registry.rollout, rollout.id)
        return r.state == ro.COMPLETED

    wait_until(progressed, 60, "the rollout to complete inside the window")
    assert all(server.view(f"light-{i}")["installed"] == "2.0.0" for i in range(4))


def test_pause_resume_abort_from_the_cli_with_who_did_it(tmp_path: Path, broker: Mosquitto, prefix: str,
                                                         servers: Any, probes: Any) -> None:
    port = free_port()
    path = write_config(tmp_path, mqtt=broker.url, prefix=prefix, port=port, text=config_text(lights=0, manual=3))
    config = load_config(path)
    server = servers(path)
    probe = probes(broker.url).subscribe(f"{prefix}/+/update")
    release(config, "kitchen", "2.0.0")
    out = tinyota("rollout", "start", "kitchen", "2.0.0", "--group", "manual", "--waves", "1,rest",
                  "--halt-at", "50%", "-c", str(path))
    assert out.returncode == 0, out.stderr
    assert "rollout 1: kitchen 2.0.0 to manual — running, wave 1 of 2" in out.stdout
    probe.wait_for(f"{prefix}/desk-0/update", lambda m: bool(m.payload))  # no device runs: stays pending

    out = tinyota("rollout", "pause", "1", "-c", str(path))
    assert out.returncode == 0 and "rollout 1 is paused" in out.stdout, out.stderr
    probe.wait_for(f"{prefix}/desk-0/update", lambda m: m.payload == b"")  # withdrawn
    again = tinyota("rollout", "pause", "1", "-c", str(path))
    assert again.returncode == 2 and "409" in again.stderr and "only a scheduled or running" in again.stderr

    assert tinyota("rollout", "resume", "1", "-c", str(path)).returncode == 0
    probe.wait_for(f"{prefix}/desk-0/update", lambda m: bool(m.payload))
    assert tinyota("rollout", "abort", "1", "-c", str(path)).returncode == 0
    probe.wait_for(f"{prefix}/desk-0/update", lambda m: m.payload == b"")
    status = json.loads(tinyota("rollout", "status", "1", "--json", "-c", str(path)).stdout)
    assert status["state"] == "aborted" and status["reason"] == "aborted by admin"
    assert [(h["who"], h["what"].split(":")[0]) for h in status["history"]] == [
        ("admin", "started"), ("rollout", "running"), ("admin", "paused"), ("admin", "resumed"), ("admin", "aborted")]
    assert all(announced_to(server, f"desk-{i}") == [] for i in (1, 2))  # wave 2 never began
    listing = tinyota("rollout", "list", "-c", str(path))
    assert "aborted" in listing.stdout and "admin" in listing.stdout


def test_kill_9_and_restart_resume_where_it_was(tmp_path: Path, broker: Mosquitto, prefix: str, processes: Any,
                                                sims: list[SimDevice], probes: Any) -> None:
    """Killed with SIGKILL while wave 2's announcements are out and no device has acted on them,
    a new server continues the same rollout: same id, wave, members and attempt ids."""
    port = free_port()
    path = write_config(tmp_path, mqtt=broker.url, prefix=prefix, port=port, text=config_text(lights=4, manual=0))
    config = load_config(path)
    probe = probes(broker.url).subscribe(f"{prefix}/+/update")
    canary = devices_for(config, None, "lights", broker.url, "1.0.0")
    sims += canary
    canary[0].start()  # only light-0 is up; the others are "asleep"
    proc = processes(path)
    release(config, "kitchen", "2.0.0")
    # Wave 2 (50 %: up to two of four, the canary counted) is light-1 alone.
    probe.wait_for(f"{prefix}/light-1/update", lambda m: bool(m.payload), timeout=60)
    before = wait_until(lambda: (r := admin(port).request("GET", "/api/rollouts/1"))["wave"] == 2 and all(
        m["attempt"] for m in r["members"] if m["wave"] == 2) and r, 20, "wave 2 bound to its attempts")
    proc.kill()

    processes(path)
    after = admin(port).request("GET", "/api/rollouts/1")
    assert len(admin(port).request("GET", "/api/rollouts")) == 1  # no second automatic rollout
    assert after["state"] == "running" and after["wave"] == 2
    assert after["members"] == before["members"]
    ids = {m["device"]: m["attempt"] for m in after["members"]}
    for sim in canary[1:]:
        sim.start()
    wait_until(lambda: admin(port).request("GET", "/api/rollouts/1")["state"] == "completed", 60, "completion")
    final = admin(port).request("GET", "/api/rollouts/1")
    for member in final["members"]:
        assert member["state"] == "succeeded"
        if member["wave"] == 2:
            assert member["attempt"] == ids[member["device"]] and member["tries"] == 1  # not re-announced
    history = json.loads(tinyota("history", "light-0", "--json", "-c", str(path)).stdout)
    assert [h["state"] for h in history] == ["succeeded"]  # the canary was told once


def test_a_timed_out_attempt_is_announced_again_after_its_backoff(
        tmp_path: Path, broker: Mosquitto, prefix: str, servers: Any, sims: list[SimDevice]) -> None:
    """light-0 is asleep for its first announcement, which times out; the retry finds it awake."""
    # Retries are the group's (the announcer's, core/retry.py); the rollout waits for them.
    text = config_text(lights=2, manual=0).replace("    attempt_timeout: {timeout}\n    rollout:",
                                                   "    attempt_timeout: {timeout}\n    retries: 4\n"
                                                   "    retry_backoff: 1s\n    rollout:")
    path = write_config(tmp_path, mqtt=broker.url, prefix=prefix, timeout="3s", text=text)
    config = load_config(path)
    server = servers(path)
    release(config, "kitchen", "2.0.0")

    def canary() -> ro.Member | None:
        rollouts = server.call(server.service.registry.rollouts)
        return rollouts[0].member("light-0") if rollouts else None

    wait_until(lambda: (m := canary()) is not None and m.state == ro.RETRY, 30, "the first attempt to time out")
    # (A device waking now would act on the first announcement, still retained, and count as a
    # success: wait for the second announcement so the retry itself is what gets tested.)
    wait_until(lambda: (m := canary()) is not None and m.state == ro.ANNOUNCED and m.tries == 2, 30, "the retry")
    sims += devices_for(config, None, "lights", broker.url, "1.0.0")
    start_sims(sims)
    wait_until(lambda: server.call(server.service.registry.rollouts)[0].state == ro.COMPLETED, 60, "completion")
    member = canary()
    assert member is not None and member.state == ro.SUCCEEDED and member.tries >= 2
    history = [a.state for a in reversed(announced_to(server, "light-0"))]  # oldest first
    assert history[0] == "timed_out" and history[-1] == "succeeded"


def test_bulk_install_is_one_call_and_skips_devices_on_the_version(tmp_path: Path, servers: Any) -> None:
    from tests.test_http import HTTP_ONLY

    path = write_config(tmp_path, text=config_text(lights=0, manual=3))
    config = load_config(path)
    server = servers(path, HTTP_ONLY)
    release(config, "kitchen", "2.0.0")
    server.call(lambda: server.service.registry.update_device("desk-1", version="2.0.0"))
    client = admin(server.server.port)
    answer = client.request("POST", "/api/install", {"devices": ["desk-0", "desk-1", "desk-2"]})
    assert sorted(a["device"] for a in answer["attempts"]) == ["desk-0", "desk-2"]
    from tinyota_mqtt.errors import TinyOTAError

    with pytest.raises(TinyOTAError, match=r"no device 'nope'.*answered 404"):
        client.request("POST", "/api/install", {"devices": ["desk-0", "nope"]})
    with pytest.raises(TinyOTAError, match="not both"):
        client.request("POST", "/api/install", {"devices": ["desk-0"], "group": "manual"})


def test_start_refusals_are_clear(tmp_path: Path, servers: Any) -> None:
    from tests.test_http import HTTP_ONLY
    from tinyota_mqtt.errors import TinyOTAError

    path = write_config(tmp_path, text=config_text(lights=0, manual=2))
    config = load_config(path)
    server = servers(path, HTTP_ONLY)
    client = admin(server.server.port)
    with pytest.raises(TinyOTAError, match=r"no release 9\.9\.9.*answered 404"):
        client.request("POST", "/api/rollouts", {"image": "kitchen", "version": "9.9.9"})
    release(config, "kitchen", "2.0.0")
    cases = [({"groups": ["nope"]}, "no group 'nope'.*answered 404"),
             ({"waves": "1,0%"}, "not a share"),
             ({"window": "Mon-Fri 02:00+3h Mars/Olympus"}, "unknown time zone"),
             ({"waves": "light-0,rest", "groups": ["manual"]}, "canary light-0 is not a device of manual"),
             ({"halt_at": "lots"}, "not a percentage"),
             ({"halt_min": 2.5}, "whole number"),
             ({"wavs": "1"}, "unknown field")]
    for extra, message in cases:
        with pytest.raises(TinyOTAError, match=message):
            client.request("POST", "/api/rollouts", {"image": "kitchen", "version": "2.0.0", **extra})
    client.request("POST", "/api/rollouts", {"image": "kitchen", "version": "2.0.0", "groups": ["manual"]})
    with pytest.raises(TinyOTAError, match=r"(?s)still running on manual.*answered 409.*abort 1"):
        client.request("POST", "/api/rollouts", {"image": "kitchen", "version": "2.0.0", "groups": ["manual"]})


# -- YAML ----------------------------------------------------------------------------------------

BAD_YAML = """\
images: {kitchen: {platform: esp8266}}
groups:
  lights:
    image: kitchen
    auto_update: true
    rollout:
      waves: [[light-9], 25%, rest]
      halt_at: 20 percent
      windw: Mon-Fri 02:00+3h Europe/Berlin
  other:
    image: kitchen
    rollout:
      window: Mon-Fry 02:00+3h Europe/Berln
      waves: 1,0%,rest
      retries: 50
  third:
    image: kitchen
    rollout: {waves: [[light-0]], window: 'Mon-Fri 02:00+3h Europe/Berlin'}
devices:
  light-0: {group: lights}
  light-1: {group: lights}
"""


def test_rollout_yaml_errors_name_file_line_and_fix() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(BAD_YAML, "config.yaml")
    problems = caught.value.problems
    assert "[config.yaml:8] groups.lights.rollout.halt_at: expected a percentage such as 20%" in problems[0]
    assert "[config.yaml:9] groups.lights.rollout: 'windw' is not a valid option. Did you mean 'window'?" \
        in problems[1]
    assert "[config.yaml:13] groups.other.rollout.window: 'fry' is not a day. Did you mean 'Fri'?" in problems[2]
    assert "[config.yaml:14] groups.other.rollout.waves: 0% is not a share" in problems[3]
    assert "[config.yaml:15] groups.other.rollout: 'retries' is not a valid option. Valid options: waves," \
        in problems[4]
    assert "groups.third.rollout.waves: canary 'light-0' is in another group" in problems[5]
    assert len(problems) == 6


def test_the_kitchen_example_from_the_docs_parses() -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "rollouts.md").read_text()
    example = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    config = parse_config(example, "rollouts.md")
    policy = config.groups["kitchen-lights"].rollout
    assert policy is not None and policy.window is not None
    assert policy.waves[0].devices == ("kitchen-1",) and policy.halt_at == 20
    assert policy.window.days == frozenset(range(5))


def test_the_rollout_demo_halts_on_its_canary(tmp_path: Path) -> None:
    import shutil

    root = Path(__file__).parent.parent
    text = (root / "config.yaml").read_text().replace("embedded_port: 1883", f"embedded_port: {free_port()}")
    (tmp_path / "config.yaml").write_text(text)
    shutil.rmtree(tmp_path / "var", ignore_errors=True)
    out = tinyota("demo", "--rollout", "--port", str(free_port()), "-c", str(tmp_path / "config.yaml"), timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "rollout 1: halted, wave 1 of 3" in out.stdout
    assert "lamp-1: flash write failed" in out.stdout
    assert "lamps never told about 1.1.0: lamp-2, lamp-3, lamp-4, lamp-5, lamp-6, lamp-7, lamp-8" in out.stdout


def test_install_without_a_version_in_a_rollout_group_reaches_that_device_now(tmp_path: Path, servers: Any) -> None:
    """The group's policy targets nothing before a device's wave; `tinyota install DEVICE` must
    still give that device the newest release (set on command), not an announcement it may not
    download."""
    from tests.test_http import HTTP_ONLY

    path = write_config(tmp_path, text=config_text(lights=3, manual=0))
    config = load_config(path)
    server = servers(path, HTTP_ONLY)
    release(config, "kitchen", "2.0.0")
    (attempt,) = server.call(server.service.install, ["light-2"])
    assert attempt.version == "2.0.0"
    assert server.call(server.service.target_version, "light-2") == "2.0.0"  # so it may download it
