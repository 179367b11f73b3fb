"""Home Assistant MQTT discovery and state for one ``update`` entity per device, as pure functions.

Every function returns ``(topic, payload, retain)`` so tests can check the shapes without a
broker, and the publishing side can send them without knowing what they mean. The test tier
(tests/test_hass_schema.py) validates what these build with Home Assistant's own schema objects.

What Home Assistant's MQTT ``update`` platform (homeassistant/components/mqtt/update.py) does
with them, and so why they look the way they do:
- The state topic's JSON goes through a schema in which every key is optional but typed: a
  ``null`` where it wants a string fails the *whole* message. A key we cannot fill is left out;
  a text we have none of is sent as ``""``, because a missing key would keep the old value.
- ``title``, ``release_summary`` and ``release_url`` set in discovery win over the state topic,
  so they travel only in the state, where they follow the offered release.
- ``update_percentage`` (0..100 or null) sets ``in_progress``; an explicit ``in_progress`` wins.
- Install publishes the fixed ``payload_install``: it cannot carry a version, so the server
  installs what it offered (``latest_version``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from tinyota_mqtt import __version__
from tinyota_mqtt.core.protocol import Topics

Message = tuple[str, bytes, bool]
PAYLOAD_INSTALL = "install"
ONLINE, OFFLINE = b"online", b"offline"
ENTITY_NAME = "Firmware"  # HA shows "<device name> Firmware" and makes update.<device>_firmware
SUMMARY_LIMIT = 255  # HA's update entity cuts release_summary at 255 characters
_PARTIAL_WORD = re.compile(r"\S+\Z")
# A device that drops off MQTT inside an update it has started is rebooting, not gone: its entity
# stays available this long (and never past the attempt's end), so HA shows no "unavailable" flash.
REBOOT_GRACE = 120.0


@dataclass(frozen=True)
class EntityInfo:
    device_id: str
    name: str
    image: str | None
    platform: str | None
    installed: str | None
    configuration_url: str | None = None  # the device's dashboard page
    entity_picture: str | None = None  # a picture the server serves without a login


@dataclass(frozen=True)
class EntityState:
    installed: str | None  # what the device last reported running
    offered: str | None  # what it may run now (policy.offered_version)
    in_progress: bool
    percentage: int | None
    title: str
    notes: str = ""
    release_url: str | None = None


def dump(body: dict[str, Any]) -> bytes:
    """Every payload for Home Assistant (the rollout sensor's too): compact, keys sorted, so one
    entity's payload is the same bytes each time and the publisher can skip what did not change."""
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode("utf-8")


def config_topic(discovery_prefix: str, device_id: str) -> str:
    return f"{discovery_prefix}/update/tinyota_{device_id}/config"


def availability_topic(topics: Topics, device_id: str) -> str:
    """The entity's availability, owned by the server (see ``entity_available``)."""
    return f"{topics.prefix}/{device_id}/entity"


def discovery(discovery_prefix: str, topics: Topics, entity: EntityInfo) -> Message:
    uid = f"tinyota_{entity.device_id}"
    model = " ".join(p for p in (entity.image, entity.platform and entity.platform.upper()) if p)
    device: dict[str, Any] = {
        "identifiers": [uid],
        "name": entity.name,
        "manufacturer": "TinyOTA-MQTT",
        "model": model or "unassigned",
    }
    if entity.installed:
        device["sw_version"] = entity.installed
    if entity.configuration_url:
        device["configuration_url"] = entity.configuration_url
    body: dict[str, Any] = {
        "name": ENTITY_NAME,
        "unique_id": uid,
        "device_class": "firmware",
        "entity_category": "config",
        "state_topic": topics.state(entity.device_id),
        "command_topic": topics.install(entity.device_id),
        "payload_install": PAYLOAD_INSTALL,
        # The server decides whether the device counts as there (a reboot inside an update does
        # not make it vanish); 'all' adds the server's own last will, so a dead server greys
        # every entity out.
        "availability": [
            {"topic": availability_topic(topics, entity.device_id)},
            {"topic": topics.server_availability},
        ],
        "availability_mode": "all",
        "device": device,
        "origin": {"name": "TinyOTA-MQTT", "sw_version": __version__},
        "qos": 1,
    }
    if entity.entity_picture:
        body["entity_picture"] = entity.entity_picture
    return config_topic(discovery_prefix, entity.device_id), dump(body), True


def removal(discovery_prefix: str, device_id: str) -> Message:
    """An empty retained config deletes the entity in Home Assistant."""
    return config_topic(discovery_prefix, device_id), b"", True


def summary(notes: str, limit: int = SUMMARY_LIMIT) -> str:
    """Release notes cut to at most ``limit`` characters on a word boundary ("…" marks the cut).

    HA renders the summary as markdown, so line breaks stay as they are.
    """
    text = notes.strip()
    if len(text) <= limit:
        return text
    cut = text[:limit]
    if cut[-1].isspace():  # a word ends right at the cut; trimming makes room for the ellipsis
        kept = cut
    else:
        # Drop the word the cut splits, back to the blank before it (a space or a line break); the
        # cut's last character is where the ellipsis goes.
        head = _PARTIAL_WORD.sub("", cut[:-1])
        kept = head if head else cut[:limit - 1]  # one endless word: cut inside it
    return kept.rstrip() + "…"


def state(topics: Topics, device_id: str, entity: EntityState) -> Message:
    body: dict[str, Any] = {
        "in_progress": entity.in_progress,
        "update_percentage": entity.percentage if entity.in_progress else None,
        "title": entity.title,
        "release_summary": summary(entity.notes),
    }
    if entity.installed is not None:
        body["installed_version"] = entity.installed
    # Nothing to offer (no release, no image): the latest is what it runs, so "up to date".
    latest = entity.offered if entity.offered is not None else entity.installed
    if latest is not None:
        body["latest_version"] = latest
    if entity.release_url:
        body["release_url"] = entity.release_url
    return topics.state(device_id), dump(body), True


def entity_available(*, online: bool | None, offline_since: float | None, updating: bool,
                     attempt_deadline: float | None, now: float, grace: float = REBOOT_GRACE) -> bool:
    """Whether Home Assistant should show the device's entity as available.

    The device's own last will decides, except while an update it has started is open: then a
    drop is the reboot into the new firmware, forgiven for ``grace`` seconds and no longer than
    the attempt may run.
    """
    if online:
        return True
    if not updating or offline_since is None:
        return False
    until = offline_since + grace
    if attempt_deadline is not None:
        until = min(until, attempt_deadline)
    return now < until


def availability(topics: Topics, device_id: str, available: bool) -> Message:
    return availability_topic(topics, device_id), ONLINE if available else OFFLINE, True
