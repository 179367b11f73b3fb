"""5. Update wave: N simulated devices download, flash, reboot and report, like real ones.

The devices are the project's ``SimDevice`` (bench/simfleet.py, in child processes), running
``1.0.0`` in an auto-update group. The clock starts with the release upload and stops when the
server has confirmed every device: tinyota publishes each device's Home Assistant state with
``installed_version`` once the device reports the new version, and an observer watches those.
The attempts are then read back from ``/api/devices`` to check that every one says succeeded.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.lab import Lab, running
from bench.mqttlite import MqttLite
from bench.peers import fleet
from bench.settings import Settings
from bench.simfleet import PER_PROCESS
from bench.util import MiB, PeakRss, die_with_parent, median

ROOT = Path(__file__).resolve().parents[2]


class Watch:
    """Each device's installed version as the server publishes it, and any failure a device reports."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = set(ids)
        self.version: dict[str, str | None] = {}
        self.failures: dict[str, str] = {}
        self._changed = asyncio.Event()

    def __call__(self, topic: str, payload: bytes, _retained: bool, _when: float) -> None:
        _, device, kind = topic.split("/")
        if device not in self.ids or not payload:
            return
        body = json.loads(payload)
        if kind == "state":
            self.version[device] = body.get("installed_version")
        elif kind == "status" and body.get("state") == "failed":
            self.failures[device] = str(body.get("error"))
        self._changed.set()

    async def all_on(self, version: str, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while sum(v == version for v in self.version.values()) < len(self.ids):
                if self.failures:  # a device never retries a failed announcement: stop waiting
                    device, error = next(iter(self.failures.items()))
                    raise RuntimeError(f"{len(self.failures)} device(s) failed the update, e.g. {device}: {error}")
                self._changed.clear()
                await self._changed.wait()


async def run(lab: Lab, s: Settings) -> dict[str, Any]:
    devices = fleet(s.wave_devices)
    ids = [d.id for d in devices]
    tiny = lab.tinyota(devices, prefix="wave", auto_update=True)
    loop = asyncio.get_running_loop()
    watch = Watch(ids)
    reps: list[dict[str, Any]] = []
    with running(tiny):
        tiny.wait_mqtt()
        observer = await MqttLite("bench-wave-observer", watch).connect("127.0.0.1", lab.mosquitto.port)
        await observer.subscribe([(f"{tiny.prefix}/+/state", 0), (f"{tiny.prefix}/+/status", 0)])
        sims = [subprocess.Popen([sys.executable, "-m", "bench.simfleet", "--broker", lab.mosquitto.url,
                                  "--prefix", tiny.prefix, "--first", str(first),
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
            await watch.all_on("1.0.0", 60)  # every device has said hello on its boot version
            for rep in range(s.wave_repeats):
                version = f"2.0.{rep}"
                watch.failures.clear()
                async with PeakRss(tiny.pid) as rss:
                    t0 = loop.time()
                    await asyncio.to_thread(tiny.upload_release, version, s.wave_image)
                    await watch.all_on(version, 120)
                    elapsed = loop.time() - t0
                views = await asyncio.to_thread(tiny.api, "GET", "/api/devices")
                succeeded = sum(1 for v in views if v["attempt"] and v["attempt"]["version"] == version
                                and v["attempt"]["state"] == "succeeded")
                reps.append({"version": version, "seconds": elapsed, "succeeded": succeeded,
                             "peak_rss_mb": rss.peak / MiB})
                print(f"  wave of {len(ids)} to {version}: {elapsed:.2f}s, {succeeded} attempts succeeded", flush=True)
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
    return {"devices": len(ids), "image_bytes": s.wave_image, "reps": reps,
            "seconds": median([r["seconds"] for r in reps]),
            "all_succeeded": all(r["succeeded"] == len(ids) for r in reps),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in reps)}
