"""How a device and an attempt are shown: the view model the server computes for the dashboard.

``fleet/views.py`` decides every rule of the dashboard's look (words, badges, buttons, progress);
the pages and dashboard.js only print it. These call the pure functions on views built by
``device_view`` from a real config, as the service builds them.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

import pytest

from tests.conftest import BASE_CONFIG, write_config
from tinyota_mqtt.config import load_config
from tinyota_mqtt.config.model import Config
from tinyota_mqtt.core import attempts as att
from tinyota_mqtt.fleet.views import attempt_display, device_view, display, running, size_text
from tinyota_mqtt.registry import DeviceRecord

ATTEMPT = att.Attempt(id="a1", device="sensor-1", version="2.0.0", from_version="1.0.0", state=att.PENDING,
                      created=1.0, deadline=31.0, updated=1.0)


# The sample config, with a display name, and the sensors group pinned to a release.
NAMED = BASE_CONFIG.replace("loner: {{password: pw-loner}}", "loner: {{password: pw-loner, name: The loner}}") \
    .replace("sensors: {{image: sensor,", "sensors: {{image: sensor, version: 1.5.0,")


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    return load_config(write_config(tmp_path_factory.mktemp("views"), text=NAMED))


def view(config: Config, *, device: str = "sensor-1", attempt: att.Attempt | None = None, is_open: bool = True,
         target: str | None = "2.0.0", **record: Any) -> dict[str, Any]:
    rec = DeviceRecord(id=device, **{"online": True, "version": "1.0.0", **record})
    current = attempt if attempt is not None and is_open and attempt.open else None
    return device_view(config, rec, current, attempt, target)


def test_every_view_carries_its_display(config: Config) -> None:
    v = view(config)
    assert v["show"] == display(v)


def test_the_kind_is_named_as_people_call_the_firmware(config: Config) -> None:
    v = view(config)
    assert v["kind"] == "tinyota" and v["show"]["kind"] == "esp_client"
    assert display({**v, "kind": "esphome"})["kind"] == "ESPHome"
    stray = device_view(config, DeviceRecord(id="stray", online=True, version="14.3.0"), None, None, None,
                        kind="tasmota")
    assert stray["show"]["kind"] == "Tasmota"  # an unconfigured device discovery knows
    # For a configured device the config says what it is; discovery's word and lines are not shown.
    snippet = "devices:\n  sensor-1: {kind: tasmota}"
    known = device_view(config, DeviceRecord(id="sensor-1"), None, None, None, kind="tasmota", adopt=snippet)
    assert (known["kind"], known["adopt"]) == ("tinyota", None)
    assert device_view(config, DeviceRecord(id="stray"), None, None, None, adopt=snippet)["adopt"] == snippet
    assert display({**v, "kind": None})["kind"] == ""  # nothing says: the page shows no badge


@pytest.mark.parametrize(("online", "word"), [(True, "online"), (False, "offline"), (None, "unknown")])
def test_online_word_and_the_offline_row(config: Config, online: bool | None, word: str) -> None:
    show = view(config, online=online, target=None)["show"]
    assert show["online"] == word
    assert ("offline" in show["classes"].split()) is (online is False)


def test_outdated_only_with_a_target_it_does_not_run(config: Config) -> None:
    behind = view(config, version="1.0.0", target="2.0.0")["show"]
    assert behind["outdated"] is True and behind["classes"] == "device outdated"
    assert view(config, version="2.0.0", target="2.0.0")["show"]["outdated"] is False
    assert view(config, version=None, target="2.0.0")["show"]["outdated"] is True  # never reported
    nothing = view(config, version="1.0.0", target=None)["show"]  # no release: nothing to be behind
    assert nothing["outdated"] is False and nothing["classes"] == "device"


@pytest.mark.parametrize(("state", "updating", "busy", "failed"), [
    (att.PENDING, True, False, False),
    (att.DOWNLOADING, True, True, False),
    (att.FLASHING, True, True, False),
    (att.SUCCEEDED, False, False, False),
    (att.FAILED, False, False, True),
    (att.TIMED_OUT, False, False, True),
    (att.CANCELLED, False, False, False),
])
def test_what_each_attempt_state_turns_on(config: Config, state: str, updating: bool, busy: bool,
                                          failed: bool) -> None:
    """Cancel and the Updating counter follow an open attempt; the progress bar a device at work;
    the red edge and the Failed counter an attempt that went wrong."""
    show = view(config, attempt=replace(ATTEMPT, state=state), version="2.0.0")["show"]
    assert (show["updating"], show["busy"], show["failed"]) == (updating, busy, failed)
    classes = show["classes"].split()
    assert ("busy" in classes, "failed" in classes) == (busy, failed)
    assert show["attempt_state"] == state


def test_no_attempt_shows_nothing_to_cancel(config: Config) -> None:
    show = view(config)["show"]
    assert show["attempt"] == "" and show["attempt_state"] == "" and not show["updating"]
    assert show["progress"] == 0


def test_progress_of_the_open_attempt_or_else_the_last_one(config: Config) -> None:
    downloading = replace(ATTEMPT, state=att.DOWNLOADING, progress=42)
    assert view(config, attempt=downloading)["show"]["progress"] == 42
    ended = replace(ATTEMPT, state=att.FAILED, progress=77, error="MD5 check failed")
    assert view(config, attempt=ended, is_open=False)["show"]["progress"] == 77


def test_install_applies_to_devices_with_an_image(config: Config) -> None:
    assert view(config, device="sensor-1")["show"]["installable"] is True
    assert view(config, device="loner", target=None)["show"]["installable"] is False  # in no group
    assert view(config, device="stranger", target=None)["show"]["installable"] is False


def test_held_and_free_space_in_words(config: Config) -> None:
    held = view(config, held=True, free_space=1_044_480)["show"]
    assert held["held"].startswith("yes") and held["free_space"] == "1020.0 KiB"
    free = view(config)["show"]
    assert free["held"] == "no" and free["free_space"] == "—"


def test_sizes_in_words() -> None:
    assert [size_text(n) for n in (None, 0, 1023, 1024, 1536, 1024 * 1024, 3 * 1024 * 1024 // 2, 512 * 1024 * 1024)] \
        == ["", "0 bytes", "1023 bytes", "1.0 KiB", "1.5 KiB", "1.0 MiB", "1.5 MiB", "512.0 MiB"]


@pytest.mark.parametrize(("changes", "text", "outcome", "kind"), [
    ({}, "2.0.0: announced, waiting for the device", "pending", "info"),
    ({"state": att.DOWNLOADING, "progress": 42}, "2.0.0: downloading 42%", "downloading 42%", "info"),
    ({"state": att.DOWNLOADING}, "2.0.0: downloading", "downloading", "info"),
    ({"state": att.FLASHING, "progress": 100}, "2.0.0: flashing", "flashing", "info"),
    ({"state": att.SUCCEEDED, "progress": 100}, "2.0.0: succeeded", "succeeded", "ok"),
    ({"state": att.FAILED, "error": "MD5 check failed"}, "2.0.0: failed (MD5 check failed)", "failed", "bad"),
    ({"state": att.FAILED}, "2.0.0: failed", "failed", "bad"),
    ({"state": att.TIMED_OUT, "error": "no report in 30 s"}, "2.0.0: timed out (no report in 30 s)",
     "timed out", "bad"),
    ({"state": att.CANCELLED, "error": "cancelled by admin"}, "2.0.0: cancelled", "cancelled", "info"),
])
def test_an_attempt_in_words(changes: dict[str, Any], text: str, outcome: str, kind: str) -> None:
    shown = attempt_display(asdict(replace(ATTEMPT, **changes)))
    assert (shown["text"], shown["outcome"], shown["kind"]) == (text, outcome, kind)
    assert shown["activity"] == f"1.0.0 → {text}"


def test_an_attempt_from_an_unknown_version_names_only_its_target() -> None:
    assert attempt_display(asdict(replace(ATTEMPT, from_version=None)))["activity"] == \
        "2.0.0: announced, waiting for the device"


def test_the_device_view_says_the_attempt_as_the_history_does(config: Config) -> None:
    attempt = replace(ATTEMPT, state=att.TIMED_OUT, error="no report")
    assert view(config, attempt=attempt, is_open=False)["show"]["attempt"] == attempt_display(asdict(attempt))["text"]



def test_the_view_of_a_configured_device_says_what_its_record_and_attempts_say(config: Config) -> None:
    downloading = replace(ATTEMPT, device="kitchen-1", state=att.DOWNLOADING, progress=42)
    record = DeviceRecord(id="kitchen-1", online=True, state="downloading", version="1.0.0", last_seen=5.0,
                          platform="esp8285", free_space=4096, last_error="MD5 check failed", last_error_at=4.0)
    v = device_view(config, record, downloading, downloading, "2.0.0")
    assert {k: x for k, x in v.items() if k != "show"} == {
        "id": "kitchen-1", "name": "kitchen-1", "known": True, "group": "kitchen-lights", "image": "kitchen",
        "online": True, "state": "downloading", "installed": "1.0.0", "target": "2.0.0", "announced": "2.0.0",
        "progress": 42, "last_seen": 5.0, "platform": "esp8285", "free_space": 4096,
        "last_error": "MD5 check failed", "last_error_at": 4.0, "pinned": None, "held": False,
        "attempt": asdict(downloading), "kind": "tinyota", "adopt": None}


def test_an_ended_attempt_is_shown_but_nothing_is_announced(config: Config) -> None:
    ended = replace(ATTEMPT, state=att.FAILED, progress=80)
    v = device_view(config, DeviceRecord(id="sensor-1"), None, ended, None)
    assert v["announced"] is None and v["progress"] is None and v["attempt"] == asdict(ended)
    assert v["platform"] == "esp32"  # never reported: the image's platform


def test_names_groups_and_strangers(config: Config) -> None:
    loner = device_view(config, DeviceRecord(id="loner"), None, None, None)
    assert (loner["name"], loner["known"], loner["group"], loner["image"]) == ("The loner", True, None, None)
    stranger = device_view(config, DeviceRecord(id="stranger-1", platform="esp32"), None, None, None)
    assert (stranger["name"], stranger["known"], stranger["group"], stranger["image"], stranger["platform"]) == \
        ("stranger-1", False, None, None, "esp32")


def test_pinned_by_command_or_else_by_the_group(config: Config) -> None:
    """A version set on command pins the device; without one, its group's `version` does."""
    assert device_view(config, DeviceRecord(id="sensor-1"), None, None, None)["pinned"] == "1.5.0"
    commanded = DeviceRecord(id="sensor-1", commanded="1.2.0")
    assert device_view(config, commanded, None, None, None)["pinned"] == "1.2.0"
    assert device_view(config, DeviceRecord(id="kitchen-1"), None, None, None)["pinned"] is None
    assert device_view(config, DeviceRecord(id="stranger-1"), None, None, None)["pinned"] is None


def test_running_groups_devices_by_image_and_the_version_they_run() -> None:
    def view(device: str, image: str | None, installed: str | None) -> dict[str, Any]:
        return {"id": device, "image": image, "installed": installed}

    found = running([view("b", "kitchen", "1.0.0"), view("a", "kitchen", "1.0.0"), view("c", "kitchen", "1.1.0"),
                           view("s", "sensor", "1.0.0"), view("new", "kitchen", None), view("loner", None, "1.0.0")])
    # In the order given (the page lists devices so); a device that never reported, or has no
    # image, runs no release of any.
    assert found == {"kitchen": {"1.0.0": ["b", "a"], "1.1.0": ["c"]}, "sensor": {"1.0.0": ["s"]}}
    assert running([]) == {}
