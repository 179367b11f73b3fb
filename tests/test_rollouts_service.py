"""Staged rollouts as the service runs them (fleet/rollouts.py), on the fake bus and a moved clock.

The waves, thresholds and windows are pure rules with tests of their own (test_rollout_core.py);
the broker tier (test_rollout.py) runs simulated devices against mosquitto. Here: what starts a
rollout (a release, a start by hand) and what refuses one, the controls, the announcements each
step makes, and what is published for automations and Home Assistant (docs/rollouts.md).
"""

from __future__ import annotations

import itertools
import json
import logging
from typing import Any

import pytest

from tests.conftest import BASE_CONFIG, load_config
from tests.test_outcomes import Fleet, full_disk
from tinyota_mqtt.core import attempts as att
from tinyota_mqtt.core import rollout as ro
from tinyota_mqtt.errors import NotFound, TinyOTAError
from tinyota_mqtt.fleet.rollouts import Conflict
from tinyota_mqtt.service import Service

# A topic prefix of its own ("lab"), so that every topic checked is built from the config's.
CONFIG = BASE_CONFIG.split("images:")[0].replace("prefix: {prefix}\n", "prefix: lab\n") + """\
images:
  kitchen: {{platform: esp8266}}
  sensor: {{platform: esp32}}
  spare: {{platform: esp32}}
  meter: {{platform: esp32}}
groups:
  lights:
    image: kitchen
    auto_update: true
    attempt_timeout: 60s
    confirm: {confirm}
    retries: 1
    retry_backoff: 10s
    rollout: {{waves: [[light-0], 50%, rest], halt_at: 50%}}
  manual: {{image: kitchen, attempt_timeout: 60s, confirm: {confirm}}}
  sensors: {{image: sensor, confirm: {confirm}}}
  meters: {{image: meter, auto_update: true, confirm: {confirm}, rollout: {{waves: [rest]}}}}
devices:
  light-0: {{group: lights, password: pw}}
  light-1: {{group: lights, password: pw}}
  light-2: {{group: lights, password: pw}}
  light-3: {{group: lights, password: pw}}
  desk-0: {{group: manual, password: pw}}
  sensor-1: {{group: sensors, password: pw}}
  meter-1: {{group: meters, password: pw}}
"""
LIGHTS = ["light-0", "light-1", "light-2", "light-3"]


@pytest.fixture
def f(fleet: Any) -> Fleet:
    made: Fleet = fleet(text=CONFIG)
    made.release("kitchen", "1.0.0")
    for device in [*LIGHTS, "desk-0", "meter-1"]:
        made.say(device, state="idle", version="1.0.0")
    made.service.tick()  # the start-up look at the store: everything runs 1.0.0 already
    assert made.service.rollouts.list() == []
    return made


def announced(f: Fleet) -> dict[str, str]:
    """Each device with an open attempt, and its version."""
    out = {}
    for device in f.config.devices:
        attempt = f.service.registry.open_attempt(device)
        if attempt is not None:
            out[device] = attempt.version
    return out


def retained(f: Fleet, topic: str) -> dict[str, Any]:
    sent = [p for t, p, r in f.bus.sent if t == topic and r]
    assert sent, f"nothing retained on {topic}"
    return dict(json.loads(sent[-1]))


def summary(f: Fleet, rollout_id: str = "1") -> dict[str, Any]:
    return f.service.rollouts.summary(f.service.rollouts.get(rollout_id))


# -- what starts one -------------------------------------------------------------------------------

def test_a_release_starts_the_groups_rollout_with_its_canary(f: Fleet, caplog: pytest.LogCaptureFixture) -> None:
    f.say("light-3", state="idle", version="1.1.0")  # already there: left out
    events: list[dict[str, Any]] = []
    f.service.watch(events.append)
    f.release("kitchen", "1.1.0")
    with caplog.at_level(logging.INFO, "tinyota.rollout"):
        f.service.tick()
    (rollout,) = f.service.rollouts.list()
    assert (rollout.id, rollout.image, rollout.version, rollout.groups, rollout.started_by) == \
        ("1", "kitchen", "1.1.0", ("lights",), "config")
    assert [m.device for m in rollout.members] == ["light-0", "light-1", "light-2"]
    assert rollout.waves == 3 and rollout.state == ro.RUNNING
    assert announced(f) == {"light-0": "1.1.0"}  # the canary alone; desk-0's group has no rollout
    assert f.service.registry.device("light-0").commanded == "1.1.0"  # its wave set it on command
    lines = [r.getMessage() for r in caplog.records]
    assert "rollout 1 of kitchen 1.1.0 by config: 3 device(s) in 3 wave(s); " in lines[0], lines
    assert lines[0].endswith(rollout.policy.describe()), lines
    assert "rollout 1 (kitchen 1.1.0): running, wave 1 of 3" in lines, lines
    # For automations: the rollout's own topic and its image's, retained; and the dashboard's event.
    assert retained(f, f"{f.pre}/server/rollout/1") == summary(f)
    assert retained(f, f"{f.pre}/server/rollout/image/kitchen") == summary(f)
    assert [e["rollout"]["state"] for e in events if e["type"] == "rollout"][-1] == ro.RUNNING
    bodies = [p for t, p, _r in f.bus.sent if t == f"{f.pre}/server/rollout/1"]
    assert all(a != b for a, b in itertools.pairwise(bodies)), bodies  # sent when it changed


def test_home_assistant_gets_a_sensor_for_the_image(f: Fleet) -> None:
    f.release("kitchen", "1.1.0")
    f.service.tick()
    config = retained(f, f"{f.config.homeassistant.discovery_prefix}/sensor/tinyota_rollout_kitchen/config")
    assert config["state_topic"] == f"{f.pre}/server/rollout/image/kitchen"


def test_a_release_added_while_running_goes_out_even_to_devices_never_heard_from(fleet: Any) -> None:
    g: Fleet = fleet(text=CONFIG)
    g.release("kitchen", "1.0.0")
    g.service.tick()  # start-up, and no device has reported: the release may be installed everywhere
    assert g.service.rollouts.list() == []
    g.release("kitchen", "1.1.0")
    g.service.tick()  # not start-up: everyone not known to run it is outdated
    (rollout,) = g.service.rollouts.list()
    assert rollout.version == "1.1.0" and len(rollout.members) == 4


def test_at_start_up_a_release_goes_out_where_a_device_is_known_to_run_another(fleet: Any) -> None:
    g: Fleet = fleet(text=CONFIG)
    g.release("kitchen", "1.1.0")
    g.say("light-1", state="idle", version="1.0.0")
    g.service.tick()
    (rollout,) = g.service.rollouts.list()
    assert rollout.version == "1.1.0" and rollout.started_by == "config"


def test_a_newer_release_supersedes_the_rollout_still_going_and_none_starts_twice(f: Fleet) -> None:
    f.release("kitchen", "1.1.0")
    f.service.tick()
    f.release("kitchen", "1.2.0")
    f.service.tick()
    first, second = f.service.rollouts.list()
    assert first.state == ro.ABORTED and first.reason == "superseded by 1.2.0"
    assert first.log[-1].who == "config"
    assert (second.version, second.state, second.started_by) == ("1.2.0", ro.RUNNING, "config")
    assert announced(f) == {"light-0": "1.2.0"}
    assert retained(f, f"{f.pre}/server/rollout/image/kitchen")["id"] == "2"  # the newest of the image
    assert retained(f, f"{f.pre}/server/rollout/1")["state"] == ro.ABORTED
    f.service.rollouts.control("2", "abort", "admin")
    f.release("sensor", "1.0.0")  # the store changed, but kitchen's newest was rolled out already
    f.service.tick()
    assert len(f.service.rollouts.list()) == 2


def test_each_groups_policy_follows_its_own_image(f: Fleet) -> None:
    # kitchen's group is up to date, manual and sensors have no policy: meters still gets its own.
    f.release("meter", "1.1.0")
    f.service.tick()
    (meters,) = f.service.rollouts.list()
    assert (meters.image, meters.version, meters.groups) == ("meter", "1.1.0", ("meters",))
    assert meters.policy == f.config.groups["meters"].rollout
    f.release("kitchen", "1.1.0")
    f.service.tick()
    f.release("meter", "1.2.0")  # kitchen 1.1.0 rolled out already; meter 1.2.0 is new
    f.service.tick()
    assert [(r.image, r.version) for r in f.service.rollouts.list()] == \
        [("meter", "1.1.0"), ("kitchen", "1.1.0"), ("meter", "1.2.0")]


def test_a_group_whose_image_has_no_release_leaves_the_next_group_its_rollout(fleet: Any) -> None:
    g: Fleet = fleet(text=CONFIG)  # no kitchen release at all
    g.say("meter-1", state="idle", version="1.0.0")
    g.release("meter", "1.1.0")
    g.service.tick()
    assert [(r.image, r.version) for r in g.service.rollouts.list()] == [("meter", "1.1.0")]


# -- starting one by hand --------------------------------------------------------------------------

def test_a_rollout_by_hand_takes_the_groups_policy_or_one_wave(f: Fleet) -> None:
    f.release("kitchen", "1.1.0")
    assert f.service.rollouts.list() == []  # no tick yet: nothing started by itself
    manual = f.service.rollouts.start("kitchen", "1.1.0", groups=["manual", "manual"], who="admin")
    assert manual.groups == ("manual",) and manual.waves == 1 and manual.started_by == "admin"
    assert manual.policy == ro.Policy()
    assert announced(f)["desk-0"] == "1.1.0"


def test_a_rollout_by_hand_of_every_group_of_the_image_uses_the_one_policy_among_them(fleet: Any) -> None:
    g: Fleet = fleet(text=CONFIG)
    g.release("kitchen", "1.1.0")  # no device has reported, and no tick: nothing started by itself
    rollout = g.service.rollouts.start("kitchen", "1.1.0", who="admin")
    assert rollout.groups == ("lights", "manual")
    assert rollout.policy == g.config.groups["lights"].rollout  # the only group with one
    assert rollout.waves == 3 and [m.device for m in rollout.in_wave(0)] == ["light-0"]
    assert announced(g) == {"light-0": "1.1.0"}


def test_a_policy_given_wins(fleet: Any) -> None:
    g: Fleet = fleet(text=CONFIG)
    g.release("kitchen", "1.1.0")
    rollout = g.service.rollouts.start("kitchen", "1.1.0", groups=["lights"], policy=ro.Policy(), who="admin")
    assert rollout.waves == 1 and set(announced(g)) == set(LIGHTS)


def refused(f: Fleet, *args: Any, **kw: Any) -> TinyOTAError:
    with pytest.raises(TinyOTAError) as caught:
        f.service.rollouts.start(*args, **kw)
    return caught.value


def test_a_start_that_cannot_be_is_refused_with_what_to_do(f: Fleet) -> None:
    f.release("sensor", "1.0.0")
    f.release("spare", "1.0.0")
    exc = refused(f, "lamp", "1.0.0", who="admin")
    assert isinstance(exc, NotFound) and (exc.message, exc.hint) == \
        ("image 'lamp' is not in the config", "images: kitchen, sensor, spare, meter")
    exc = refused(f, "kitchen", "9.9.9", who="admin")
    assert isinstance(exc, NotFound) and "9.9.9" in exc.message
    exc = refused(f, "kitchen", "1.0.0", groups=["attic"], who="admin")
    assert isinstance(exc, NotFound) and (exc.message, exc.hint) == \
        ("no group 'attic'", "groups: lights, manual, sensors, meters")
    exc = refused(f, "kitchen", "1.0.0", groups=["sensors"], who="admin")
    assert (exc.message, exc.hint) == \
        ("group sensors runs image sensor, not kitchen", "groups of kitchen: lights, manual")
    exc = refused(f, "spare", "1.0.0", groups=["sensors"], who="admin")
    assert exc.hint == "groups of spare: none"
    exc = refused(f, "spare", "1.0.0", who="admin")
    assert (exc.message, exc.hint) == ("no group runs image spare", "give a group `image: spare` in the config")
    canary = ro.Policy(waves=(ro.WaveSpec(devices=("sensor-1", "light-9")), ro.REST))
    exc = refused(f, "kitchen", "1.0.0", groups=["lights", "manual"], policy=canary, who="admin")
    assert exc.message == "canary sensor-1, light-9 is not a device of lights, manual"
    assert f.service.rollouts.list() == []


def test_only_one_live_rollout_covers_a_group(f: Fleet) -> None:
    f.release("kitchen", "1.1.0")
    f.service.tick()  # rollout 1 on lights
    with pytest.raises(Conflict) as caught:
        f.service.rollouts.start("kitchen", "1.1.0", groups=["manual", "lights"], who="admin")
    assert caught.value.status == 409
    assert (caught.value.message, caught.value.hint) == \
        ("rollout 1 (kitchen 1.1.0) is still running on lights", "`tinyota rollout abort 1` first")
    other = f.service.rollouts.start("kitchen", "1.1.0", groups=["manual"], who="admin")  # no overlap
    assert other.id == "2"
    f.service.rollouts.control("1", "abort", "admin")
    f.service.rollouts.control("2", "abort", "admin")
    assert f.service.rollouts.start("kitchen", "1.1.0", who="admin").id == "3"  # lights and manual
    with pytest.raises(Conflict) as both:
        f.service.rollouts.start("kitchen", "1.1.0", groups=["manual", "lights"], who="admin")
    assert both.value.message == "rollout 3 (kitchen 1.1.0) is still running on lights, manual"


# -- the controls ----------------------------------------------------------------------------------

def test_pause_resume_and_abort_by_hand(f: Fleet, caplog: pytest.LogCaptureFixture) -> None:
    f.release("kitchen", "1.1.0")
    f.service.tick()
    (first,) = f.service.registry.recent_attempts("light-0", 1)
    f.clock.now += 5
    with caplog.at_level(logging.INFO, "tinyota.rollout"):
        paused = f.service.rollouts.control("1", "pause", "alice")
    assert paused.state == ro.PAUSED and paused.log[-1].who == "alice"
    assert paused.updated == paused.log[-1].at == f.clock.now
    assert "rollout 1 paused by alice" in [r.getMessage() for r in caplog.records]
    assert announced(f) == {}  # the canary had not started: withdrawn
    assert f.service.registry.attempt(first.id).state == att.CANCELLED
    assert retained(f, f"{f.pre}/server/rollout/1")["state"] == ro.PAUSED
    f.clock.now += 5
    resumed = f.service.rollouts.control("1", "resume", "bob")
    assert resumed.state == ro.RUNNING and announced(f) == {"light-0": "1.1.0"}  # told again
    assert resumed.updated == resumed.log[-1].at == f.clock.now and resumed.log[-1].who == "bob"
    f.clock.now += 5
    aborted = f.service.rollouts.control("1", "abort", "carol")
    assert aborted.state == ro.ABORTED and aborted.log[-1].who == "carol" and announced(f) == {}
    assert aborted.updated == aborted.log[-1].at == f.clock.now
    with pytest.raises(Conflict) as caught:
        f.service.rollouts.control("1", "resume", "dave")
    assert caught.value.status == 409 and caught.value.message == \
        "rollout 1 is aborted; only a paused or halted rollout can be resumed"
    with pytest.raises(NotFound) as unknown:
        f.service.rollouts.control("1", "stop", "dave")
    assert (unknown.value.message, unknown.value.hint) == ("no rollout action 'stop'", "pause, resume or abort")
    with pytest.raises(NotFound) as missing:
        f.service.rollouts.control("7", "pause", "dave")
    assert (missing.value.message, missing.value.hint) == ("no rollout '7'", "`tinyota rollout list` shows them")
    f.service.registry.flush()
    assert f.service.registry.rollout("1").state == ro.ABORTED


# -- each step -------------------------------------------------------------------------------------

def test_waves_follow_successes_and_a_failure_halts_with_a_warning(f: Fleet, caplog: pytest.LogCaptureFixture) -> None:
    f.release("kitchen", "1.1.0")
    f.service.tick()
    f.say("light-0", state="idle", version="1.1.0")
    with caplog.at_level(logging.INFO, "tinyota.rollout"):
        f.service.tick()
    assert [r.getMessage() for r in caplog.records] == ["rollout 1 (kitchen 1.1.0): running, wave 2 of 3"]
    caplog.clear()
    assert announced(f) == {"light-1": "1.1.0"}  # half of four, the canary counted
    assert f.service.rollouts.get("1").wave == 1
    attempt = f.service.registry.open_attempt("light-1")
    with caplog.at_level(logging.INFO, "tinyota.rollout"):
        f.say("light-1", state="failed", version="1.0.0", id=attempt.id, error="flash write failed")
        f.service.tick()
    rollout = f.service.rollouts.get("1")
    assert rollout.state == ro.HALTED and "light-1: flash write failed" in (rollout.reason or "")
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "tinyota.rollout"]
    assert warning.getMessage() == f"rollout 1 (kitchen 1.1.0): halted, wave 2 of 3: {rollout.reason}"
    assert announced(f) == {}  # light-2 and light-3 never told
    assert retained(f, f"{f.pre}/server/rollout/image/kitchen")["reason"] == rollout.reason


def test_a_timeout_with_a_retry_left_waits_for_the_retry_instead_of_halting(f: Fleet) -> None:
    f.release("kitchen", "1.1.0")
    f.service.tick()
    first = f.service.registry.open_attempt("light-0")
    f.clock.now += 61
    f.service.tick()  # timed out; the group allows one retry, after 10 s
    assert f.service.registry.attempt(first.id).state == att.TIMED_OUT
    rollout = f.service.rollouts.get("1")
    assert rollout.state == ro.RUNNING and rollout.members[0].state == ro.RETRY
    f.clock.now += 11
    f.service.tick()
    retry = f.service.registry.open_attempt("light-0")
    assert retry is not None and retry.id != first.id
    assert f.service.rollouts.get("1").members[0].attempt == retry.id  # the rollout follows the retry
    f.say("light-0", state="idle", version="1.1.0")
    f.service.tick()
    assert announced(f) == {"light-1": "1.1.0"}


def test_a_release_deleted_under_a_rollout_halts_it_with_the_reason(f: Fleet) -> None:
    f.release("kitchen", "1.1.0")
    f.service.tick()
    f.say("light-0", state="idle", version="1.1.0")
    f.service.store.delete("kitchen", "1.1.0")
    f.service.rollouts.tick()  # before the store's change is noticed: the wave's announce fails
    rollout = f.service.rollouts.get("1")
    assert rollout.state == ro.HALTED
    assert rollout.reason == "cannot announce to light-1: no release 1.1.0 of image 'kitchen'"
    assert rollout.members[1].state == ro.WAITING and announced(f) == {}


def test_a_reconnect_sends_every_rollout_and_the_sensor_again(f: Fleet) -> None:
    f.release("kitchen", "1.1.0")
    f.service.tick()
    f.release("kitchen", "1.2.0")
    f.service.tick()
    f.bus.sent.clear()
    f.service.attach(f.bus)
    f.bus.connect(f.service)
    for rollout_id in ("1", "2"):
        assert retained(f, f"{f.pre}/server/rollout/{rollout_id}") == summary(f, rollout_id)
    assert retained(f, f"{f.pre}/server/rollout/image/kitchen")["id"] == "2"
    retained(f, f"{f.config.homeassistant.discovery_prefix}/sensor/tinyota_rollout_kitchen/config")


def test_the_sensor_is_announced_for_a_rollout_policy_before_any_rollout(fleet: Any) -> None:
    g: Fleet = fleet(text=CONFIG)
    g.service.attach(g.bus)
    g.bus.connect(g.service)
    retained(g, f"{g.config.homeassistant.discovery_prefix}/sensor/tinyota_rollout_kitchen/config")
    assert not [t for t, _p, _r in g.bus.sent if "tinyota_rollout_sensor" in t]  # no policy, no rollout


def test_without_home_assistant_no_sensor(fleet: Any) -> None:
    g: Fleet = fleet(text=CONFIG.replace("  enabled: true\n", "  enabled: false\n"))
    g.release("kitchen", "1.1.0")
    g.say("light-0", state="idle", version="1.0.0")
    g.service.attach(g.bus)
    g.bus.connect(g.service)
    g.service.rollouts.start("kitchen", "1.1.0", groups=["lights"], who="admin")
    assert retained(g, f"{g.pre}/server/rollout/1")["id"] == "1"
    assert not [t for t, _p, _r in g.bus.sent if "tinyota_rollout" in t]


def test_a_rollout_outside_its_window_says_when_it_opens(fleet: Any, caplog: pytest.LogCaptureFixture) -> None:
    g: Fleet = fleet(text=CONFIG)
    g.release("kitchen", "1.1.0")
    window = ro.parse_window("daily 00:00+1h UTC")
    with caplog.at_level(logging.INFO, "tinyota.rollout"):
        rollout = g.service.rollouts.start("kitchen", "1.1.0", groups=["lights"],
                                           policy=ro.Policy(window=window), who="admin")
    assert rollout.state == ro.SCHEDULED and announced(g) == {}
    assert [r.getMessage() for r in caplog.records][1:] == ["rollout 1 (kitchen 1.1.0): scheduled, wave 1 of 1"]
    shown = retained(g, f"{g.pre}/server/rollout/1")
    assert shown["window_open"] is False and shown["next_window"] == window.next_open(g.clock.now)


def downloading(f: Fleet, device: str) -> att.Attempt:
    attempt = f.service.registry.open_attempt(device)
    assert attempt is not None
    f.say(device, state="downloading", version="1.0.0", progress=10, id=attempt.id)
    f.service.tick()
    return attempt


def test_a_pause_while_every_announced_device_is_downloading_still_pauses(f: Fleet) -> None:
    f.release("kitchen", "1.1.0")
    f.service.tick()
    attempt = downloading(f, "light-0")
    paused = f.service.rollouts.control("1", "pause", "alice")
    assert paused.state == ro.PAUSED  # nothing to withdraw: the download goes on, the rollout waits
    assert f.service.registry.open_attempt("light-0") == f.service.registry.attempt(attempt.id)
    assert retained(f, f"{f.pre}/server/rollout/1")["state"] == ro.PAUSED
    f.service.registry.flush()
    assert f.service.registry.rollout("1").state == ro.PAUSED


def test_an_ended_rollout_follows_the_download_it_left_running_and_nothing_else(f: Fleet) -> None:
    f.release("kitchen", "1.1.0")
    f.service.tick()
    downloading(f, "light-0")
    assert f.service.rollouts.control("1", "abort", "carol").state == ro.ABORTED
    f.say("light-0", state="idle", version="1.1.0")
    f.service.tick()
    assert f.service.rollouts.get("1").members[0].state == ro.SUCCEEDED  # its outcome still counts
    assert summary(f)["counts"]["succeeded"] == 1
    f.say("light-2", state="idle", version="1.1.0")  # installed some other way, after the end
    f.service.tick()
    assert f.service.rollouts.get("1").member("light-2").state == ro.WAITING  # not this rollout's doing
    assert summary(f)["counts"]["succeeded"] == 1


def test_a_pause_withdraws_every_announcement_no_device_has_started(f: Fleet) -> None:
    f.release("kitchen", "1.1.0")
    f.service.rollouts.start("kitchen", "1.1.0", groups=["lights"], policy=ro.Policy(), who="admin")
    assert set(announced(f)) == set(LIGHTS)
    downloading(f, "light-2")
    f.service.rollouts.control("1", "pause", "alice")
    assert announced(f) == {"light-2": "1.1.0"}  # the three unstarted taken back, the download left alone


def test_a_device_of_a_later_wave_that_gets_there_first_counts_and_is_not_told(f: Fleet) -> None:
    f.release("kitchen", "1.1.0")
    f.service.tick()
    f.say("light-2", state="idle", version="1.1.0")  # in the last wave: flashed by hand, say
    by_hand = f.service.install(["light-3"], "1.1.0")[0]  # and one installed on purpose
    f.service.tick()
    rollout = f.service.rollouts.get("1")
    assert rollout.member("light-2").state == ro.SUCCEEDED
    assert (rollout.member("light-3").state, rollout.member("light-3").attempt) == (ro.ANNOUNCED, by_hand.id)
    assert rollout.member("light-1").state == ro.WAITING  # the waves themselves go on as planned
    f.say("light-0", state="idle", version="1.1.0")
    f.service.tick()
    assert set(announced(f)) == {"light-1", "light-3"}  # light-2 is not told what it runs


def test_the_groups_retries_are_the_rollouts_and_the_last_failure_halts_it(f: Fleet) -> None:
    f.release("kitchen", "1.1.0")
    f.service.tick()
    for n in range(2):  # the first try and the group's one retry (the default would allow three)
        attempt = f.service.registry.open_attempt("light-0")
        f.say("light-0", state="failed", version="1.0.0", id=attempt.id, error="connection refused")
        f.service.tick()
        rollout = f.service.rollouts.get("1")
        if n == 0:
            assert rollout.state == ro.RUNNING and rollout.members[0].state == ro.RETRY
            f.clock.now += 11  # the group's back-off
            f.service.tick()
    assert rollout.state == ro.HALTED and rollout.members[0].state == ro.FAILED
    assert rollout.members[0].tries == 2 and rollout.members[0].error == "connection refused"


def fail_twice(f: Fleet) -> None:
    """The canary's first try and its one retry fail, the second reported but not yet ticked."""
    f.release("kitchen", "1.1.0")
    f.service.tick()
    attempt = f.service.registry.open_attempt("light-0")
    f.say("light-0", state="failed", version="1.0.0", id=attempt.id, error="connection refused")
    f.clock.now += 11
    f.service.tick()
    attempt = f.service.registry.open_attempt("light-0")
    f.say("light-0", state="failed", version="1.0.0", id=attempt.id, error="connection refused")


def test_a_release_replaced_with_other_bytes_is_a_new_target_not_a_last_try_used_up(f: Fleet) -> None:
    fail_twice(f)
    f.release("kitchen", "1.1.0", replace=True)  # a fixed build under the same version
    f.service.rollouts.tick()  # before the tick that notices the store's change
    assert f.service.rollouts.get("1").members[0].state == ro.RETRY
    f.service.tick()
    newest = f.service.registry.open_attempt("light-0")
    assert newest is not None and newest.sha256 == f.service.store.get("kitchen", "1.1.0").sha256
    assert f.service.rollouts.get("1").members[0].attempt == newest.id


def test_a_release_deleted_after_the_last_try_failed_counts_that_failure(f: Fleet) -> None:
    fail_twice(f)
    f.service.store.delete("kitchen", "1.1.0")
    f.service.rollouts.tick()
    rollout = f.service.rollouts.get("1")
    assert rollout.members[0].state == ro.FAILED and rollout.state == ro.HALTED


def test_a_member_taken_out_of_the_config_leaves_the_rollout_running(f: Fleet) -> None:
    f.release("kitchen", "1.1.0")
    f.service.tick()
    f.service.registry.flush()
    f.service.close()
    path = f.config.source
    assert path is not None
    path.write_text(path.read_text().replace("  light-3: {group: lights, password: pw}\n", ""))
    config = load_config(path)
    restarted = Service(config, clock=f.clock)
    restarted.tick()  # light-3 has no group now: the default retries, and no crash
    assert restarted.rollouts.get("1").state == ro.RUNNING
    restarted.close()


def test_each_change_is_published_a_state_or_wave_change_also_logged_and_a_quiet_tick_says_nothing(
        f: Fleet, caplog: pytest.LogCaptureFixture) -> None:
    f.release("kitchen", "1.1.0")
    f.service.rollouts.start("kitchen", "1.1.0", groups=["lights"], policy=ro.Policy(), who="admin")
    events: list[dict[str, Any]] = []
    f.service.watch(lambda event: events.append(event) if event["type"] == "rollout" else None)
    topic = f"{f.pre}/server/rollout/1"
    discovery = f"{f.config.homeassistant.discovery_prefix}/sensor/tinyota_rollout_kitchen/config"

    def step() -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.INFO, "tinyota.rollout"):
            f.service.tick()
        return [r.getMessage() for r in caplog.records if r.name == "tinyota.rollout"]

    sent = len(f.bus.on(topic))
    assert step() == [] and events == [] and len(f.bus.on(topic)) == sent  # nothing new, nothing said
    f.say("light-0", state="idle", version="1.1.0")
    assert step() == []  # one member done: the rollout's counts change, its state and wave do not
    assert len(f.bus.on(topic)) == sent + 1 and retained(f, topic) == summary(f) == events[-1]["rollout"]
    for device in LIGHTS[1:]:
        f.say(device, state="idle", version="1.1.0")
    assert step() == ["rollout 1 (kitchen 1.1.0): completed, wave 1 of 1"]
    assert [e["rollout"]["state"] for e in events] == [ro.RUNNING, ro.COMPLETED]
    assert len(f.bus.on(discovery)) == 1  # the sensor's config is sent once, not with each change
    f.bus.sent.clear()
    f.service.attach(f.bus)
    f.bus.connect(f.service)
    assert len(f.bus.on(discovery)) == 1 and len(f.bus.on(topic)) == 1  # a reconnect: each again, once


def test_each_sync_rolls_out_what_came_while_the_server_or_the_broker_was_away(fleet: Any) -> None:
    g: Fleet = fleet(text=CONFIG)
    g.release("kitchen", "1.0.0")  # added while the server was down
    g.service.attach(g.bus)
    g.service.tick()  # start-up: the store is seen, nothing judged before the sync
    g.bus.connect(g.service)
    g.sync()
    assert g.service.rollouts.list() == []  # a fresh state file: no device known to need it
    g.bus.drop(g.service)
    g.release("kitchen", "1.1.0")  # uploaded while the broker is away
    g.service.tick()  # seen, but nobody can be told, and no outcome judged
    assert g.service.rollouts.list() == []
    g.bus.connect(g.service)
    g.sync()
    (rollout,) = g.service.rollouts.list()  # as the tick would have, had it been connected
    assert rollout.version == "1.1.0" and len(rollout.members) == 4
    assert announced(g) == {"light-0": "1.1.0"}


def test_a_sync_that_cannot_write_the_state_file_says_so_and_does_not_raise(
        fleet: Any, caplog: pytest.LogCaptureFixture) -> None:
    g: Fleet = fleet(text=CONFIG)
    g.release("kitchen", "1.0.0")
    g.say("light-1", state="idle", version="0.9.0")
    for n in range(30):  # a state file bigger than full_disk's limit
        g.say(f"stranger-{n}", state="idle", version="1.0.0", error="x" * 200)
    g.service.attach(g.bus)
    g.service.tick()
    g.service.registry.flush()
    g.bus.connect(g.service)
    with full_disk(), caplog.at_level(logging.ERROR, "tinyota.service"):
        g.sync()  # the rollout's start cannot be committed
    errors = [r.getMessage() for r in caplog.records if r.name == "tinyota.service"]
    (error,) = errors  # once, with what SQLite said and what to do
    assert error.startswith(f"cannot write the state file {g.config.server.state}: ")
    assert error.endswith("\n  hint: check free disk space and permissions")
    g.service.tick()  # room again: the tick goes on where the sync stopped
    assert [r.version for r in g.service.rollouts.list()] == ["1.0.0"]
