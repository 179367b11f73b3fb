"""Print the Python requirements of the Home Assistant integrations the HA test tier loads.

Runs with the HA venv's interpreter (``./dev`` calls it after installing ``homeassistant``), so it
reads the installed release's own lists: bootstrap's default integrations and every manifest's
``requirements`` and ``dependencies``. Installing exactly these up front lets the tier start HA
with ``--skip-pip``: nothing is fetched while a test runs, and a missing package fails loudly.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from homeassistant import bootstrap

# What tests/hass/instance.py writes into configuration.yaml, plus the MQTT integration the
# tier adds through its config flow (and the update platform it forwards to).
CONFIGURED = {"http", "api", "websocket_api", "config", "frontend", "logger", "mqtt", "update"}


def main() -> int:
    components = Path(bootstrap.__file__).parent / "components"
    todo = set(CONFIGURED) | bootstrap.CORE_INTEGRATIONS | bootstrap.DEFAULT_INTEGRATIONS
    seen: set[str] = set()
    requirements: set[str] = set()
    while todo:
        domain = todo.pop()
        if domain in seen:
            continue
        seen.add(domain)
        manifest_file = components / domain / "manifest.json"
        if not manifest_file.exists():
            print(f"no integration {domain!r} in this Home Assistant", file=sys.stderr)
            return 1
        manifest = json.loads(manifest_file.read_text())
        requirements.update(manifest.get("requirements", []))
        todo.update(manifest.get("dependencies", []))
    print("\n".join(sorted(requirements)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
