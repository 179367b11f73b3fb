"""What the announcer promises, seen where devices, Home Assistant and the dashboard see it.

The real Service on files, with the clock and the recording bus of tests/test_outcomes.py: which
announcements go out (or are withdrawn) on which topic, what each attempt's history says, what
the device view and the dashboard's live events show, and what a refused command tells the
user. docs/protocol.md ("Targets and attempts") is the contract.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BASE_CONFIG
from tests.test_outcomes import Fleet
from tinyota_mqtt.core import attempts as att
from tinyota_mqtt.core import tokens as tk
from tinyota_mqtt.errors import NotFound, TinyOTAError
from tinyota_mqtt.store import FirmwareStore

# conftest's config with a Tasmota plug beside the esp_client devices.
PLUGS = (BASE_CONFIG
         .replace("images:\n", "images:\n  plug: {{platform: esp8266}}\n")
         .replace("groups:\n", "groups:\n  plugs: {{image: plug, kind: tasmota, auto_update: false, "
                               "attempt_timeout: {timeout}, confirm: {confirm}}}\n")
         .replace("devices:\n", "devices:\n  plug-1: {{group: plugs, password: pw-plug-1}}\n"))




def device_events(f: Fleet) -> list[dict[str, Any]]:
    """The device views the dashboard's live stream is sent, from now on."""
    seen: list[dict[str, Any]] = []
    f.service.events.watch(lambda event: seen.append(event["device"]) if event["type"] == "device" else None)
    return seen


def update_topic(f: Fleet, device: str) -> list[bytes]:
    return f.bus.on(f"{f.pre}/{device}/update")


def connect_and_sync(f: Fleet) -> None:
    """A (re)connect, then the broker's echo of the sync marker: judging may start."""
    f.bus.connect(f.service)
    f.sync()


# -- an announcement ------------------------------------------------------------------------------

def test_an_announcement_names_a_new_attempt_from_the_version_the_device_runs(
        fleet: Any, caplog: pytest.LogCaptureFixture) -> None:
    f = fleet()
    f.release("sensor", "2.0.0")
    f.say("sensor-1", state="idle", version="1.0.0")
    views = device_events(f)
    activity: list[dict[str, Any]] = []
    f.service.events.watch(lambda event: activity.append(event) if event["type"] == "attempt" else None)
    with caplog.at_level(logging.INFO, "tinyota.service"):
        (attempt,) = f.service.install(["sensor-1"])
    # docs/protocol.md: 12 hex digits, so the announcement fits a device's 512-byte buffer.
    assert re.fullmatch(r"[0-9a-f]{12}", attempt.id) and f.announced("sensor-1")["id"] == attempt.id
    assert attempt.from_version == "1.0.0" and attempt.deadline == f.clock.now + 30
    shown = [e["attempt"]["show"]["activity"] for e in activity]  # the dashboard's activity list
    assert shown == ["1.0.0 → 2.0.0: announced, waiting for the device"], shown
    assert [v["announced"] for v in views if v["id"] == "sensor-1"] == ["2.0.0"]
    said = [r.getMessage() for r in caplog.records if attempt.id in r.getMessage()]
    assert len(said) == 1 and all(word in said[0] for word in ("sensor ", "2.0.0", "sensor-1")), said


def test_a_new_announcement_clears_the_error_of_the_last_one(fleet: Any) -> None:
    f = fleet()
    f.release("sensor", "2.0.0")
    (first,) = f.service.install(["sensor-1"])
    f.say("sensor-1", state="failed", version="1.0.0", id=first.id, error="MD5 check failed")
    view = f.service.device_view("sensor-1")
    assert (view["last_error"], view["last_error_at"]) == ("MD5 check failed", f.clock.now)
    f.clock.now += 5
    f.service.install(["sensor-1"])  # asked again on purpose: the old error is not the news any more
    view = f.service.device_view("sensor-1")
    assert (view["last_error"], view["last_error_at"]) == (None, None)


def test_a_device_already_on_a_new_release_is_not_told_about_it(fleet: Any) -> None:
    f = fleet()
    f.say("kitchen-1", state="idle", version="1.0.0")  # flashed by hand before the release was added
    f.release("kitchen", "1.0.0")
    f.service.tick()
    assert update_topic(f, "kitchen-1") == [] and f.attempt("kitchen-1") is None
    assert f.announced("kitchen-2")["version"] == "1.0.0"


def test_reconcile_returns_the_attempts_it_started(fleet: Any) -> None:
    f = fleet()
    f.release("kitchen", "1.0.0")
    started = f.service.reconcile()
    assert sorted(a.device for a in started) == ["kitchen-1", "kitchen-2"]
    assert {a.id for a in started} == {f.announced("kitchen-1")["id"], f.announced("kitchen-2")["id"]}
    assert f.service.reconcile() == []  # under way: nothing new


# -- withdrawing ----------------------------------------------------------------------------------

def test_a_target_that_moves_away_withdraws_the_announcement_and_says_why(fleet: Any) -> None:
    f = fleet()
    store = FirmwareStore(f.config.server.store)
    f.release("kitchen", "1.0.0")
    f.say("kitchen-1", state="idle", version="1.0.0")
    f.release("kitchen", "1.1.0")
    f.service.tick()
    told = f.announced("kitchen-1")["id"]
    f.clock.now += 5
    views = device_events(f)
    store.delete("kitchen", "1.1.0")  # the target falls back to 1.0.0, which kitchen-1 runs
    f.service.tick()
    assert update_topic(f, "kitchen-1")[-1] == b""
    old = f.service.registry.attempt(told)
    assert old.state == att.CANCELLED and old.updated == f.clock.now
    assert "runs 1.0.0" in old.error, old.error
    assert [v["announced"] for v in views if v["id"] == "kitchen-1"] == [None]
    # kitchen-2 was told 1.0.0 in its place; delete that too and the group has no target left.
    moved = f.announced("kitchen-2")["id"]
    store.delete("kitchen", "1.0.0")
    f.service.tick()
    assert update_topic(f, "kitchen-2")[-1] == b""
    error = f.service.registry.attempt(moved).error
    assert "1.0.0" in error and "no longer its target" in error, error


def test_installing_what_the_device_runs_withdraws_the_open_attempt(
        fleet: Any, caplog: pytest.LogCaptureFixture) -> None:
    f = fleet()
    f.release("sensor", "1.0.0")
    f.release("sensor", "2.0.0")
    f.say("sensor-1", state="idle", version="1.0.0")
    (attempt,) = f.service.install(["sensor-1"], "2.0.0")
    f.clock.now += 5
    views = device_events(f)
    with caplog.at_level(logging.INFO, "tinyota.service"):
        assert f.service.install(["sensor-1"], "1.0.0") == []  # changed its mind: stay on 1.0.0
    assert update_topic(f, "sensor-1")[-1] == b""
    old = f.service.registry.attempt(attempt.id)
    assert old.state == att.CANCELLED and old.updated == f.clock.now and "runs 1.0.0" in old.error
    assert [v["announced"] for v in views if v["id"] == "sensor-1"] == [None]
    said = [r.getMessage() for r in caplog.records if "nothing to install" in r.getMessage()]
    assert len(said) == 1 and "sensor-1" in said[0] and "1.0.0" in said[0], said


# -- commands ---------------------------------------------------------------------------------------

def test_install_takes_each_devices_release_from_its_own_image(fleet: Any) -> None:
    f = fleet()
    kitchen = f.release("kitchen", "1.0.0")
    sensor = f.release("sensor", "1.0.0")  # the same version in another image: other bytes
    f.release("sensor", "1.1.0")
    f.service.install(["sensor-1"], "1.0.0")
    f.service.install(["kitchen-1"])
    assert (f.announced("sensor-1")["image"], f.announced("sensor-1")["sha256"]) == ("sensor", sensor.sha256)
    assert (f.announced("kitchen-1")["image"], f.announced("kitchen-1")["sha256"]) == ("kitchen", kitchen.sha256)


def test_a_group_install_tells_each_member_that_does_not_run_it(fleet: Any) -> None:
    f = fleet()
    f.release("kitchen", "1.0.0")
    f.release("kitchen", "1.1.0")
    f.say("kitchen-1", state="idle", version="1.0.0")  # the first member is on it already
    started = f.service.install_group("kitchen-lights", "1.0.0")
    assert [a.device for a in started] == ["kitchen-2"]
    assert f.announced("kitchen-2")["version"] == "1.0.0"
    assert update_topic(f, "kitchen-1")[-1] == b""  # its report had started it on 1.1.0: withdrawn


def test_refused_commands_say_what_is_wrong_and_change_nothing(fleet: Any) -> None:
    f = fleet()
    with pytest.raises(NotFound) as refused:
        f.service.install(["sensor-1"])
    assert "sensor" in refused.value.message
    assert "tinyota release" in refused.value.hint and "--image sensor" in refused.value.hint
    f.release("sensor", "2.0.0")
    with pytest.raises(TinyOTAError) as refused:
        f.service.install(["loner"])
    assert "loner" in refused.value.message and "group" in refused.value.hint
    with pytest.raises(NotFound) as refused:
        f.service.install(["sensor-1", "nope"])  # one unknown device refuses the whole request
    assert "'nope'" in refused.value.message and str(f.config.source) in refused.value.message
    assert "`tinyota status`" in refused.value.hint  # a command to type, as written
    assert f.attempt("sensor-1") is None and update_topic(f, "sensor-1") == []
    with pytest.raises(NotFound) as refused:
        f.service.install_group("nope")
    assert "'nope'" in refused.value.message and all(g in refused.value.hint for g in f.config.groups)
    (attempt,) = f.service.install(["sensor-1"])
    with pytest.raises(NotFound) as refused:
        f.service.cancel(["sensor-1", "nope"])
    assert "'nope'" in refused.value.message
    assert f.service.registry.open_attempt("sensor-1") == attempt


def test_cancel_says_so_in_the_history_and_the_group_offers_again(fleet: Any) -> None:
    f = fleet()
    f.release("sensor", "1.0.0")
    f.release("sensor", "1.1.0")
    f.say("sensor-1", state="idle", version="0.9.0")
    (attempt,) = f.service.install(["sensor-1"], "1.0.0")  # set on command: offered until it runs it
    assert json.loads(f.bus.on(f"{f.pre}/sensor-1/state")[-1])["latest_version"] == "1.0.0"
    assert f.service.cancel(["sensor-1"]) == ["sensor-1"]
    assert "cancel" in f.service.registry.attempt(attempt.id).error
    view = f.service.device_view("sensor-1")
    assert view["held"] is True and view["pinned"] is None
    # docs/protocol.md: a held device is still offered what its group would run.
    assert json.loads(f.bus.on(f"{f.pre}/sensor-1/state")[-1])["latest_version"] == "1.1.0"
    assert f.service.cancel(["sensor-1"]) == []  # nothing open any more


def test_an_install_after_a_cancel_lifts_the_hold(fleet: Any) -> None:
    f = fleet()
    f.release("kitchen", "1.0.0")
    f.service.tick()
    f.service.cancel(["kitchen-1"])
    f.service.install(["kitchen-1"])
    assert f.service.device_view("kitchen-1")["held"] is False  # the API's boolean, not null
    f.release("kitchen", "1.1.0")
    f.service.tick()
    assert f.announced("kitchen-1")["version"] == "1.1.0"  # following its group again


# -- retries ----------------------------------------------------------------------------------------

def test_a_retry_that_comes_due_reconciles_that_device_alone(fleet: Any) -> None:
    """A fleet of a thousand: each retry (and each report of a new version) decides its own
    device again, not every device; the tick that sees a new release does the rest."""
    f = fleet(extra="retry_backoff: 10s")
    f.release("kitchen", "1.0.0")
    f.service.tick()
    f.say("kitchen-1", state="failed", version="0.9.0", id=f.announced("kitchen-1")["id"], error="Wrong HTTP Code")
    f.release("kitchen", "1.1.0")  # not seen by a tick yet
    f.clock.now += 10
    f.service.announcer.retry_due()
    assert f.announced("kitchen-1")["version"] == "1.1.0"  # the retry goes to its target as it is now
    assert f.announced("kitchen-2")["version"] == "1.0.0"
    f.service.tick()
    assert f.announced("kitchen-2")["version"] == "1.1.0"


def test_giving_up_is_logged_once_not_at_every_tick(fleet: Any, caplog: pytest.LogCaptureFixture) -> None:
    f = fleet(extra="retries: 1, retry_backoff: 10s")
    f.release("kitchen", "1.0.0")
    f.service.tick()
    with caplog.at_level(logging.WARNING, "tinyota.service"):
        for _ in range(2):  # the first try and its one retry, both refused for the moment
            f.say("kitchen-1", state="failed", version="0.9.0", id=f.announced("kitchen-1")["id"],
                  error="Wrong HTTP Code")
            f.clock.now += 10
            f.service.tick()
        for _ in range(20):
            f.clock.now += 1
            f.service.tick()
    said = [r.getMessage() for r in caplog.records if "again" in r.getMessage()]
    assert len(said) == 1, said
    assert all(part in said[0] for part in ("kitchen-1", "1.0.0", "gave up after 2 tries")), said


# -- after a (re)connect ----------------------------------------------------------------------------

def test_a_reconnect_sends_each_open_announcement_again_as_it_was(fleet: Any) -> None:
    f = fleet()
    f.release("kitchen", "1.0.0")
    f.release("sensor", "1.0.0")  # the same version in both images, other bytes
    f.service.install(["sensor-1"])
    f.service.install(["kitchen-1"])
    first = {d: update_topic(f, d)[-1] for d in ("sensor-1", "kitchen-1")}
    f.service.attach(f.bus)
    f.bus.connect(f.service)
    for device, payload in first.items():
        assert update_topic(f, device)[-1] == payload and len(update_topic(f, device)) == 2, device


def test_a_reconnect_skips_an_attempt_whose_release_is_gone(fleet: Any) -> None:
    f = fleet()
    f.release("sensor", "2.0.0")
    f.release("kitchen", "1.0.0")
    f.service.install(["sensor-1"])  # opened before kitchen-1's, so met first below
    f.service.install(["kitchen-1"])
    FirmwareStore(f.config.server.store).delete("sensor", "2.0.0")
    f.service.attach(f.bus)
    connect_and_sync(f)
    assert update_topic(f, "sensor-1")[-1] == b""  # withdrawn once judging starts, not sent again
    assert len(update_topic(f, "kitchen-1")) == 2  # the one after it still goes out again


def test_a_device_taken_out_of_its_group_over_a_restart_is_withdrawn_not_told_again(
        fleet: Any, tmp_path: Path) -> None:
    f = fleet()
    f.release("sensor", "2.0.0")
    (attempt,) = f.service.install(["sensor-1"])
    f.close()
    g = fleet(text=BASE_CONFIG.replace("sensor-1: {{group: sensors, ", "sensor-1: {{"))
    g.service.attach(g.bus)
    g.bus.connect(g.service)
    assert update_topic(g, "sensor-1") == []  # no image, so no announcement to repeat
    connect_and_sync(g)
    assert update_topic(g, "sensor-1")[-1] == b""
    ended = g.service.registry.attempt(attempt.id)
    assert ended.state == att.CANCELLED and "no longer its target" in ended.error


# -- a Tasmota device: told by commands, not by a retained announcement ----------------------------

def test_a_tasmota_device_is_told_withdrawn_and_told_again_its_own_way(fleet: Any) -> None:
    f = fleet(text=PLUGS)
    f.release("plug", "1.0.0")
    (attempt,) = f.service.install(["plug-1"])
    commands = [(t, p) for t, p, retained in f.bus.sent if t.startswith("cmnd/plug-1/") and not retained]
    assert [t for t, _p in commands] == ["cmnd/plug-1/OtaUrl", "cmnd/plug-1/Upgrade"]
    token = commands[0][1].decode().split("/")[-2]  # …/t/<device>/<token>/firmware.bin
    assert f.service.token_download("plug-1", token, tk.FULL).release is not None
    f.service.attach(f.bus)
    f.bus.connect(f.service)  # not heard from since: pending, so the commands go out again
    assert [t for t, _p, _r in f.bus.sent if t.startswith("cmnd/plug-1/")][2:] == \
        ["cmnd/plug-1/OtaUrl", "cmnd/plug-1/Upgrade"]
    token = [p for t, p, _r in f.bus.sent if t == "cmnd/plug-1/OtaUrl"][-1].decode().split("/")[-2]
    f.service.cancel(["plug-1"])
    refused = f.service.token_download("plug-1", token, tk.FULL)
    assert refused.release is None and "withdrawn" in (refused.refusal or ""), refused  # what it is told
    assert update_topic(f, "plug-1") == []  # the tinyota topic is not its


# -- a download the device already took whole -----------------------------------------------------

def test_an_install_again_after_a_whole_download_needs_no_second_download(fleet: Any) -> None:
    """confirm: download+report. The device took the image whole and is slow to come back; an
    install on purpose (with the attempt still open, or after it timed out) opens a new attempt
    that already counts the download, so the device's report confirms it."""
    f = fleet(confirm="download+report")
    rel = f.release("sensor", "2.0.0")
    f.say("sensor-1", state="idle", version="1.0.0")
    for timed_out in (False, True):
        f.service.install(["sensor-1"])
        f.service.download_started("sensor-1", rel)
        f.service.download_finished("sensor-1", rel)
        if timed_out:
            f.clock.now += 31
            f.service.tick()
            assert f.attempt("sensor-1").state == att.TIMED_OUT
        (again,) = f.service.install(["sensor-1"])
        assert again.download == att.SERVED, (timed_out, again)
        f.say("sensor-1", state="idle", version="2.0.0")
        assert f.service.registry.attempt(again.id).state == att.SUCCEEDED, timed_out
        f.say("sensor-1", state="idle", version="1.0.0")  # back for the second round


# -- the log lines of a commit --------------------------------------------------------------------

def test_a_few_announcements_get_a_line_each_and_every_release_is_named(
        fleet: Any, caplog: pytest.LogCaptureFixture) -> None:
    f = fleet(more_kitchens=1)  # kitchen-1 to kitchen-3: three, still "a few"
    f.release("kitchen", "1.0.0")
    f.release("sensor", "2.0.0")
    with caplog.at_level(logging.INFO, "tinyota.service"):
        f.service.tick()
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("announced")]
        each = [f"announced kitchen 1.0.0 to {d} (attempt {f.announced(d)['id']})"
                for d in ("kitchen-1", "kitchen-2", "kitchen-3")]
        assert sorted(lines) == each, lines
        caplog.clear()
        f.release("kitchen", "1.1.0")
        f.service.install(["kitchen-1", "sensor-1"], None)  # two releases in one commit
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("announced")]
    assert [line.split(" to ")[0] for line in lines] == ["announced kitchen 1.1.0", "announced sensor 2.0.0"], lines
