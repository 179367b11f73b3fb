"""7. Staged rollout: a clean one wave by wave, then a broken release that must halt in wave 2.

The fleet is the project's ``SimDevice`` (bench/simfleet.py, 50 per child process), in one group
whose ``rollout:`` policy has four waves and a soak time. First a clean release goes out: its
duration from upload to "completed" is compared with the sum of its soak times (the floor a
rollout cannot beat). Then a share of wave 2's devices is made to fail every later update
(``SimSettings.fail``), and a second release goes out: the clock runs from its upload to the
rollout's retained state saying "halted".

An observer sees everything over MQTT (the devices' announcements, their outcomes, the rollout's
state), so the bench also computes, from what the devices said, the moment the halt rule was
first met, and counts the devices that were told about the broken release after it (goal 0) and
the devices of waves 3 and 4 that were told at all (goal 0).
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.lab import Lab, running
from bench.mqttlite import MqttLite
from bench.peers import fleet
from bench.settings import Settings
from bench.simfleet import PER_PROCESS
from bench.util import die_with_parent
from tinyota_mqtt.core import rollout as ro

ROOT = Path(__file__).resolve().parents[2]
CLEAN, BROKEN = "2.0.0", "3.0.0"


class Observer:
    """Timestamps (the loop's clock, on receipt) of announcements, outcomes and rollout states."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.installed: dict[str, str | None] = {}
        self.succeeded: dict[tuple[str, str], float] = {}  # (device, version) -> when
        self.failed: dict[str, float] = {}
        self.announced: list[tuple[float, str, str]] = []  # (when, device, version)
        self.rollout: list[tuple[float, dict[str, Any]]] = []
        self._changed = asyncio.Event()

    def __call__(self, topic: str, payload: bytes, _retained: bool, when: float) -> None:
        parts = topic.split("/")
        if parts[1:3] == ["server", "rollout"]:
            if parts[3:4] == ["image"] and payload:
                self.rollout.append((when, json.loads(payload)))
        elif len(parts) == 3 and payload:
            _, device, kind = parts
            body = json.loads(payload)
            if kind == "state":
                version = body.get("installed_version")
                self.installed[device] = version
                self.succeeded.setdefault((device, str(version)), when)
            elif kind == "status" and body.get("state") == "failed":
                self.failed.setdefault(device, when)
            elif kind == "update":
                self.announced.append((when, device, str(body.get("version"))))
        self._changed.set()

    async def until(self, predicate: Any, timeout: float, what: str) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}") from None

    def state(self, rollout_id: str) -> dict[str, Any] | None:
        found = [body for _, body in self.rollout if body["id"] == rollout_id]
        return found[-1] if found else None

    def first(self, rollout_id: str, state: str) -> float:
        return next(when for when, body in self.rollout if body["id"] == rollout_id and body["state"] == state)


def threshold_crossed(obs: Observer, waves: tuple[tuple[str, ...], ...], halt_at: float, halt_min: int,
                      version: str) -> float | None:
    """When the devices' own reports first met the halt rule (wave 2, or waves 1–2 together)."""
    outcomes: list[tuple[float, str, bool]] = []
    for device in waves[0] + waves[1]:
        if (device, version) in obs.succeeded:
            outcomes.append((obs.succeeded[(device, version)], device, True))
        elif device in obs.failed:
            outcomes.append((obs.failed[device], device, False))
    second = set(waves[1])
    for scope in (second, set(waves[0]) | second):
        ended = failed = 0
        for when, device, ok in sorted(outcomes):
            if device not in scope:
                continue
            ended += 1
            failed += not ok
            if failed and ended >= halt_min and 100 * failed >= halt_at * ended:
                return when
    return None


async def run(lab: Lab, s: Settings) -> dict[str, Any]:
    devices = fleet(s.rollout_devices)
    ids = [d.id for d in devices]
    policy = (f"{{waves: '{s.rollout_waves}', soak: {s.rollout_soak}s, halt_at: '{s.rollout_halt_at}', "
              f"halt_min: {s.rollout_halt_min}}}")
    tiny = lab.tinyota(devices, prefix="rollout", auto_update=True, rollout=policy)
    waves = ro.plan_waves(ro.parse_waves(s.rollout_waves), ids)  # what the server will plan, sorted ids
    halt_at = ro.parse_percent(s.rollout_halt_at, "halt_at")
    # Every 20th device of wave 2 (for 5 %), so the failures are spread over the wave, not bunched.
    step = max(1, round(1 / s.rollout_fail_share))
    failing = list(waves[1][::step])[: math.ceil(len(waves[1]) * s.rollout_fail_share)]
    loop = asyncio.get_running_loop()
    obs = Observer(tiny.prefix)
    with running(tiny):
        tiny.wait_mqtt()
        observer = await MqttLite("bench-rollout-observer", obs).connect("127.0.0.1", lab.mosquitto.port)
        p = tiny.prefix
        await observer.subscribe([(f"{p}/+/state", 0), (f"{p}/+/status", 0), (f"{p}/+/update", 0),
                                  (f"{p}/server/rollout/#", 0)])
        sims = [subprocess.Popen([sys.executable, "-m", "bench.simfleet", "--broker", lab.mosquitto.url,
                                  "--prefix", p, "--first", str(first),
                                  "--count", str(min(PER_PROCESS, len(ids) - first))],
                                 cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                 preexec_fn=die_with_parent)
                 for first in range(0, len(ids), PER_PROCESS)]
        try:
            for sim in sims:
                assert sim.stdout is not None
                line = await asyncio.to_thread(sim.stdout.readline)
                if line.strip() != "ready":
                    raise RuntimeError(f"simulated devices did not start: {line!r}")
            await obs.until(lambda: sum(obs.installed.get(d) == "1.0.0" for d in ids) == len(ids), 120,
                            "every device to say hello")

            # -- a clean rollout ------------------------------------------------------------------
            t0 = loop.time()
            await asyncio.to_thread(tiny.upload_release, CLEAN, s.rollout_image)
            await obs.until(lambda: (st := obs.state("1")) is not None and st["state"] in ("completed", "halted"),
                            600, f"the rollout of {CLEAN} to end")
            clean_state = obs.state("1")
            assert clean_state is not None
            if clean_state["state"] != "completed":
                raise RuntimeError(f"the clean rollout halted: {clean_state['reason']}")
            clean_seconds = obs.first("1", "completed") - t0
            soak_total = s.rollout_soak * (len(waves) - 1)  # no soak after the last wave
            on_clean = sum(obs.installed.get(d) == CLEAN for d in ids)
            print(f"  clean rollout of {len(ids)} in {len(waves)} waves: {clean_seconds:.2f} s, "
                  f"{clean_seconds / soak_total:.2f}× its {soak_total:g} s of soak", flush=True)

            # -- a broken release -----------------------------------------------------------------
            for sim in sims:
                assert sim.stdin is not None and sim.stdout is not None
                sim.stdin.write(f"fail {','.join(failing)}\n")
                sim.stdin.flush()
                if (await asyncio.to_thread(sim.stdout.readline)).strip() != "ok":
                    raise RuntimeError("a simulated fleet did not take the fail command")
            t0 = loop.time()
            await asyncio.to_thread(tiny.upload_release, BROKEN, s.rollout_image)
            await obs.until(lambda: (st := obs.state("2")) is not None and st["state"] in ("halted", "completed"),
                            600, f"the rollout of {BROKEN} to halt")
            halted_state = obs.state("2")
            assert halted_state is not None
            halted = halted_state["state"] == "halted"
            halt_seconds = obs.first("2", "halted") - t0 if halted else None
            # Let wave 2's attempts already under way finish (they may), then count.
            second = set(waves[1])
            await obs.until(lambda: all((d, BROKEN) in obs.succeeded or d in obs.failed
                                        or obs.installed.get(d) == BROKEN for d in second), 120,
                            "wave 2's attempts to end")
            crossed = threshold_crossed(obs, waves, halt_at, s.rollout_halt_min, BROKEN)
            told_after = sorted({d for when, d, v in obs.announced
                                 if v == BROKEN and crossed is not None and when > crossed})
            later = {d for wave in waves[2:] for d in wave}
            later_told = sorted({d for _, d, v in obs.announced if v == BROKEN and d in later})
            print(f"  broken release: halted after {halt_seconds or float('nan'):.2f} s "
                  f"({halted_state['reason']}); told after the threshold: {len(told_after)}; "
                  f"waves 3-4 told: {len(later_told)}", flush=True)
        finally:
            for sim in sims:
                assert sim.stdin is not None
                sim.stdin.close()
            for sim in sims:
                try:
                    await asyncio.to_thread(sim.wait, 30)
                except subprocess.TimeoutExpired:
                    sim.kill()
                    sim.wait()
            await observer.close()
    return {
        "devices": len(ids), "waves": [len(w) for w in waves], "policy": policy, "image_bytes": s.rollout_image,
        "clean_seconds": clean_seconds, "soak_seconds": soak_total, "clean_over_soak": clean_seconds / soak_total,
        "clean_all_on_version": on_clean == len(ids),
        "failing": len(failing), "halted": halted, "halt_reason": halted_state["reason"],
        "release_to_halt_s": halt_seconds,
        "threshold_to_halt_s": None if crossed is None or not halted else obs.first("2", "halted") - crossed,
        "told_after_threshold": len(told_after), "later_waves_told": len(later_told),
        "wave2_counts": halted_state["waves"][1] if len(halted_state["waves"]) > 1 else None,
    }
