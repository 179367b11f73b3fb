"""Home Assistant MQTT discovery for one ``update`` entity per device, as pure functions.

Every function returns ``(topic, payload, retain)`` so tests can check the shapes without a
broker, and the MQTT adapter can publish them without knowing what they mean.

Schema: Home Assistant's MQTT ``update`` platform (homeassistant/components/mqtt/update.py and
the MQTT Update docs). Two details shape what follows:
- ``title``, ``release_summary`` and ``release_url`` set in discovery win over the state topic's
  JSON, so they travel only in the state, where they can follow the current release.
- ``in_progress`` is a bool and ``update_percentage`` a number or null (HA 2024.11 and later).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tinyota_mqtt import __version__
from tinyota_mqtt.core.protocol import Topics

Message = tuple[str, bytes, bool]
PAYLOAD_INSTALL = "install"


@dataclass(frozen=True)
class EntityInfo:
    device_id: str
    name: str
    image: str | None
    platform: str | None
    installed: str | None


def _dump(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode("utf-8")


def config_topic(discovery_prefix: str, device_id: str) -> str:
    return f"{discovery_prefix}/update/tinyota_{device_id}/config"


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
    body = {
        "name": "Firmware",
        "unique_id": uid,
        "device_class": "firmware",
        "entity_category": "config",
        "state_topic": topics.state(entity.device_id),
        "command_topic": topics.install(entity.device_id),
        "payload_install": PAYLOAD_INSTALL,
        # Installable only while both the device and the server are up: 'all' needs both online.
        "availability": [
            {"topic": topics.availability(entity.device_id)},
            {"topic": topics.server_availability},
        ],
        "availability_mode": "all",
        "device": device,
        "origin": {"name": "TinyOTA-MQTT", "sw_version": __version__},
        "qos": 1,
    }
    return config_topic(discovery_prefix, entity.device_id), _dump(body), True


def removal(discovery_prefix: str, device_id: str) -> Message:
    """An empty retained config deletes the entity in Home Assistant."""
    return config_topic(discovery_prefix, device_id), b"", True


def state(topics: Topics, device_id: str, *, installed: str | None, latest: str | None,
          in_progress: bool, percentage: int | None, title: str, summary: str = "",
          release_url: str | None = None) -> Message:
    body: dict[str, Any] = {
        "installed_version": installed,
        # With no target, the latest version is what it runs: HA then shows "up to date".
        "latest_version": latest if latest is not None else installed,
        "in_progress": in_progress,
        "update_percentage": percentage if in_progress else None,
        "title": title,
        "release_summary": summary[:255] or None,  # HA's documented limit
        "release_url": release_url,
    }
    return topics.state(device_id), _dump(body), True
