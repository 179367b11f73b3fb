"""Rollout state over MQTT: topic names and the Home Assistant sensor, as pure functions.

``<prefix>/server/rollout/<id>`` carries each rollout's summary (retained), for automations;
``<prefix>/server/rollout/image/<image>`` the newest rollout of an image, which a discovered
Home Assistant ``sensor`` per image shows: its state is the rollout's state (running, halted…),
the summary its attributes. Rollout ids are numbers, so "image" never collides with one.
"""

from __future__ import annotations

from tinyota_mqtt import __version__
from tinyota_mqtt.core.hass import dump
from tinyota_mqtt.core.protocol import Topics

Message = tuple[str, bytes, bool]


def rollout_topic(topics: Topics, rollout_id: str) -> str:
    return f"{topics.prefix}/server/rollout/{rollout_id}"


def image_topic(topics: Topics, image: str) -> str:
    return f"{topics.prefix}/server/rollout/image/{image}"


def discovery(discovery_prefix: str, topics: Topics, image: str) -> Message:
    uid = f"tinyota_rollout_{image}"
    body = {
        "name": f"{image} rollout",
        "unique_id": uid,
        "state_topic": image_topic(topics, image),
        "value_template": "{{ value_json.state }}",
        "json_attributes_topic": image_topic(topics, image),
        "icon": "mdi:progress-upload",
        "availability": [{"topic": topics.server_availability}],
        "device": {"identifiers": ["tinyota_server"], "name": "TinyOTA server", "manufacturer": "TinyOTA-MQTT",
                   "model": "OTA server", "sw_version": __version__},
        "origin": {"name": "TinyOTA-MQTT", "sw_version": __version__},
        "qos": 1,
    }
    return f"{discovery_prefix}/sensor/{uid}/config", dump(body), True
