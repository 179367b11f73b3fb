"""Every payload core/hass.py builds, checked with Home Assistant's own schema objects.

The schemas are imported from the installed ``homeassistant`` package in the HA venv (Python 3.13,
see ./dev) by tests/hass/validate.py, run as a subprocess: no copy of HA's schema lives here.
"""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.hass.instance import venv
from tinyota_mqtt.core import hass
from tinyota_mqtt.core.protocol import Topics

VALIDATE = Path(__file__).parent / "hass" / "validate.py"
TOPICS = Topics("tinyota")


def ha_verdicts(items: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    python = venv() / "bin" / "python"
    sent = json.dumps([{"kind": kind, "payload": payload.decode()} for kind, payload in items])
    done = subprocess.run([str(python), str(VALIDATE)], input=sent, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    verdicts: list[dict[str, Any]] = json.loads(done.stdout)
    return verdicts


def discoveries() -> list[bytes]:
    out = []
    for installed, platform, url, picture in itertools.product(
            (None, "1.0.0"), (None, "esp32"), (None, "http://127.0.0.1:8000/devices/kitchen-1"),
            (None, "http://127.0.0.1:8000/icon.svg")):
        entity = hass.EntityInfo("kitchen-1", "Kitchen", "kitchen" if platform else None, platform, installed,
                                 configuration_url=url, entity_picture=picture)
        out.append(hass.discovery("homeassistant", TOPICS, entity)[1])
    return out


def states() -> list[bytes]:
    out = []
    notes = ("", "Faster boot", "word " * 80, "ü" * 300, "line one\n\n- a *list*")
    for installed, offered, busy, percentage, note, url in itertools.product(
            (None, "1.0.0"), (None, "1.0.0", "1.2.0-rc.1"), (False, True), (None, 0, 42, 100), notes,
            (None, "http://127.0.0.1:8000/releases#release-kitchen-1.2.0")):
        entity = hass.EntityState(installed=installed, offered=offered, in_progress=busy, percentage=percentage,
                                  title="Kitchen lights", notes=note, release_url=url)
        out.append(hass.state(TOPICS, "kitchen-1", entity)[1])
    return out


def test_every_discovery_and_state_passes_home_assistants_schemas() -> None:
    items = [("discovery", p) for p in discoveries()] + [("state", p) for p in states()]
    verdicts = ha_verdicts(items)
    bad = [(kind, payload, v) for (kind, payload), v in zip(items, verdicts, strict=True)
           if v["error"] or v["dropped"]]
    assert not bad, bad[:3]


def test_the_validator_catches_what_home_assistant_rejects() -> None:
    # The shapes of issue 10: a null summary dropped the whole state; an unknown option vanishes.
    good_state = json.loads(states()[-1])
    good_discovery = json.loads(discoveries()[-1])
    items = [
        ("state", json.dumps({**good_state, "release_summary": None}).encode()),
        ("state", json.dumps({**good_state, "installed_version": None}).encode()),
        ("state", json.dumps({**good_state, "release_url": "not a url"}).encode()),
        ("discovery", json.dumps({**good_discovery, "relase_url": "x"}).encode()),
        ("discovery", json.dumps({**good_discovery,
                                  "device": {**good_discovery["device"], "sw_verison": "1"}}).encode()),
    ]
    verdicts = ha_verdicts(items)
    assert "release_summary" in verdicts[0]["error"]
    assert "installed_version" in verdicts[1]["error"]
    assert "release_url" in verdicts[2]["error"]
    assert verdicts[3]["dropped"] == ["relase_url"]
    assert "sw_verison" in verdicts[4]["error"]  # the device block refuses unknown keys outright


@pytest.mark.parametrize("notes", ["", "short", "a" * 300, "word " * 100, "x" * 254 + " tail"])
def test_summary_is_cut_on_a_word_boundary(notes: str) -> None:
    got = hass.summary(notes)
    assert len(got) <= hass.SUMMARY_LIMIT
    if len(notes.strip()) <= hass.SUMMARY_LIMIT:
        assert got == notes.strip()
    else:
        assert got.endswith("…")
        kept = got[:-1]
        assert notes.startswith(kept)
        if " " in notes[:hass.SUMMARY_LIMIT]:
            assert notes[len(kept)] == " "  # cut where a word ended, not inside one
