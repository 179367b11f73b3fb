"""The seven scenarios, in the order a run does them. Each is ``async run(lab, settings) -> dict``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from bench.lab import Lab
from bench.scenarios import fanout, fast_clients, footprint, ingestion, rollout, slow_fleet, wave
from bench.settings import Settings

Scenario = Callable[[Lab, Settings], Awaitable[dict[str, Any]]]

SCENARIOS: dict[str, Scenario] = {
    "slow_fleet": slow_fleet.run,
    "fast_clients": fast_clients.run,
    "fanout": fanout.run,
    "ingestion": ingestion.run,
    "wave": wave.run,
    "rollout": rollout.run,
    "footprint": footprint.run,
}
