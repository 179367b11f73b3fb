"""6. Footprint: how fast each server starts, and what it holds in memory idle and under load.

Start time is spawn → first answer (``/healthz`` 200 for tinyota, any HTTP answer for the peers),
with the full fleet's config; tinyota's start and idle RSS also with a config of
``footprint_larger`` (5,000) devices, each with an update announced, as in the first. A bare
``python -c pass`` is timed alongside: it is the floor any Python server pays before its first
line runs. "Open downloads" are devices reading so slowly
that every one of them is still mid-download while the RSS is sampled.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from typing import Any

from bench.clients import paced_download
from bench.lab import Lab, running
from bench.peers import Device, Firmware, Peer, Tinyota, fleet
from bench.settings import Settings
from bench.util import MiB, PeakRss, median


def python_start() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - started


async def hold_open(peer: Peer, fw: Firmware, devices: list[Device], rate: float, sample: float) -> dict[str, Any]:
    """Open one slow download per device; sample RSS once all are streaming; then hang up."""
    opened = [asyncio.Event() for _ in devices]
    tasks = [asyncio.create_task(paced_download(peer.port, fw, d, rate=rate, opened=e, timeout=120))
             for d, e in zip(devices, opened, strict=True)]
    try:
        async with asyncio.timeout(60):
            await asyncio.gather(*(e.wait() for e in opened))
        await asyncio.sleep(sample / 2)  # let every stream settle into its steady state
        async with PeakRss(peer.pid, interval=0.05) as rss:
            await asyncio.sleep(sample)
        still_open = sum(not t.done() for t in tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"open": still_open, "rss_mb": rss.peak / MiB}


async def run(lab: Lab, s: Settings) -> dict[str, Any]:
    devices = fleet(s.footprint_open)
    tiny = lab.tinyota(devices, prefix="foot")
    fw = tiny.add_release("1.0.0", 1 * MiB)
    servers: list[Peer] = [*lab.http_peers(devices, [fw])[:2], tiny]  # nginx, threaded stdlib, tinyota
    python_floor = median([python_start() for _ in range(s.start_repeats)])
    results = []
    for peer in servers:
        starts = []
        for _ in range(s.start_repeats):
            starts.append(peer.start())
            peer.stop()
        with running(peer):
            if isinstance(peer, Tinyota):
                peer.wait_mqtt()
                peer.target(fw.version)
            await asyncio.sleep(s.settle_seconds)  # past startup work (for tinyota: announcing, HA discovery)
            idle = peer.rss()
            loaded = await hold_open(peer, fw, devices, s.hold_rate, s.sample_seconds)
        results.append({
            "server": peer.name, "start_s": median(starts), "starts_s": starts, "idle_rss_mb": idle / MiB,
            "open_downloads": loaded["open"], "rss_open_mb": loaded["rss_mb"],
            "kib_per_download": (loaded["rss_mb"] - idle / MiB) * 1024 / max(1, loaded["open"]),
        })
        print(f"  footprint {peer.name:<16} start={median(starts):.3f}s idle={idle / MiB:.1f} MB "
              f"with {loaded['open']} open={loaded['rss_mb']:.1f} MB", flush=True)
    larger = await idle_with(lab, s, fleet(s.footprint_larger))
    return {"devices": len(devices), "python_start_s": python_floor, "servers": results, "larger": larger}


async def idle_with(lab: Lab, s: Settings, devices: list[Device]) -> dict[str, Any]:
    """tinyota's start time and idle RSS with a config naming ``devices``."""
    tiny = lab.tinyota(devices, prefix="foot")
    fw = tiny.add_release("1.0.0", 1 * MiB)
    starts = []
    for _ in range(s.start_repeats):
        starts.append(tiny.start(timeout=60))
        tiny.stop()
    with running(tiny):
        tiny.wait_mqtt(timeout=60)
        tiny.target(fw.version)
        await asyncio.sleep(s.settle_seconds)
        idle = tiny.rss()
    print(f"  footprint tinyota, {len(devices)} devices: start={median(starts):.3f}s idle={idle / MiB:.1f} MB",
          flush=True)
    return {"server": "tinyota", "devices": len(devices), "start_s": median(starts), "starts_s": starts,
            "idle_rss_mb": idle / MiB}
