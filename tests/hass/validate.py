"""Validate payloads with Home Assistant's own schema objects; runs in the HA venv's Python.

tests/test_hass_schema.py sends a JSON list of ``{"kind": "discovery" | "state", "payload": str}``
on stdin and reads one verdict per payload: ``{"error": str | null, "dropped": [keys]}``.
``dropped`` lists discovery options the schema does not know: HA removes those silently
(``vol.REMOVE_EXTRA``), so a misspelt option would otherwise pass unnoticed.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import voluptuous as vol
from homeassistant.components.mqtt import update


def dropped(sent: dict[str, Any], kept: dict[str, Any]) -> list[str]:
    gone = [key for key in sent if key not in kept]
    if isinstance(sent.get("device"), dict) and isinstance(kept.get("device"), dict):
        gone += [f"device.{key}" for key in sent["device"] if key not in kept["device"]]
    return gone


def check(kind: str, raw: str) -> dict[str, Any]:
    body = json.loads(raw)
    try:
        if kind == "state":
            update.MQTT_JSON_UPDATE_SCHEMA(body)
            return {"error": None, "dropped": []}
        kept = update.DISCOVERY_SCHEMA(body)
        return {"error": None, "dropped": dropped(body, kept)}
    except vol.Invalid as exc:
        return {"error": str(exc), "dropped": []}


def main() -> int:
    items = json.load(sys.stdin)
    json.dump([check(item["kind"], item["payload"]) for item in items], sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
