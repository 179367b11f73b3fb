"""1. Slow fleet: N devices at once, each reading the image at ESP speed (and 5,000 at a fifth of it).

The question is not raw speed but whether one slow device slows the others: the ideal fleet time
is one device's time (size ÷ rate), and a server that streams with backpressure gets close to it.
The one-thread stdlib server serves devices one after another, so running 1000 ten-second
downloads in series would take three hours; it gets ``single_probe`` devices at once instead, and
its fleet time is projected from the time each of them took.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from bench.clients import paced_fleet
from bench.lab import Lab, running
from bench.peers import Device, Firmware, Peer, fleet
from bench.settings import Settings
from bench.util import MiB, PeakRss, percentile


async def fleet_run(peer: Peer, fw: Firmware, devices: list[Device], rate: float,
                    processes: int = 1, timeout: float | None = None) -> dict[str, Any]:
    ideal = fw.size / rate
    async with PeakRss(peer.pid) as rss:
        cpu = peer.cpu()
        fleet_result = await paced_fleet(peer.port, fw, devices, rate=rate, timeout=timeout or 3 * ideal + 60,
                                         processes=processes)
        cpu = peer.cpu() - cpu
    downloads, elapsed = fleet_result.downloads, fleet_result.seconds
    ttfbs = [d.ttfb for d in downloads if d.ttfb is not None]
    # Once its first byte arrived, did each download run at device speed? This separates the
    # server's streaming from how long the whole fleet waited to be let in.
    transfers = [d.seconds - d.ttfb for d in downloads if d.ok and d.seconds is not None and d.ttfb is not None]
    errors = sorted({d.error for d in downloads if d.error})
    return {
        "server": peer.name, "n": len(devices), "rate_bytes_s": rate,
        "all_ok": all(d.ok for d in downloads), "ok": sum(d.ok for d in downloads),
        "completion_ratio": elapsed / ideal,
        "ttfb_p50_s": percentile(ttfbs, 50), "ttfb_p99_s": percentile(ttfbs, 99),
        "slowest_transfer_ratio": max(transfers) / ideal if transfers else None,
        "peak_rss_mb": rss.peak / MiB, "errors": errors[:3],
        "cpu_s": cpu, "client_cpu_s": fleet_result.client_cpu_s, "client_processes": processes,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


async def single_thread_projection(peer: Peer, fw: Firmware, devices: list[Device], rate: float,
                                   plan: tuple[tuple[int, float], ...]) -> list[dict[str, Any]]:
    """Run a few devices at once against the one-thread server (at ``rate``) and project to each
    (N, rate) of ``plan``. It serves one device after another, each for its size ÷ rate, so a
    slower device lengthens each turn in proportion: one probe serves every rate."""
    probe = await fleet_run(peer, fw, devices, rate)
    # Served one after another: each device adds one download time to the fleet's.
    per_device = probe["completion_ratio"] * fw.size / rate / len(devices)
    projected = []
    for n, at in plan:
        turn = per_device * rate / at
        projected.append({
            "server": peer.name, "n": n, "projected": True, "rate_bytes_s": at,
            "all_ok": None,  # unknown: with N far above the listen queue, connects time out in reality
            "completion_ratio": n * turn / (fw.size / at),
            # The i-th device waits for the i-1 before it.
            "ttfb_p50_s": (n / 2) * turn, "ttfb_p99_s": 0.99 * n * turn,
            "slowest_transfer_ratio": probe["slowest_transfer_ratio"],
            "peak_rss_mb": probe["peak_rss_mb"], "errors": [],
            "measured_with": len(devices), "measured_completion_ratio": probe["completion_ratio"],
            # Each device costs it what a probe device cost: the CPU scales with N, not the time.
            "cpu_s": probe["cpu_s"] * n / len(devices), "client_cpu_s": None,
        })
    return projected


async def settled(peer: Peer, limit: float = 30.0) -> None:
    """Wait (at most ``limit`` seconds) until ``peer`` uses next to no CPU. A server that lost
    devices to the fleet's time limit (the threaded stdlib server at N=5000) keeps a thread per
    abandoned connection busy for a while: the next server's run must not share the cores with it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    before = peer.cpu()
    while loop.time() < deadline:
        await asyncio.sleep(0.5)
        now = peer.cpu()
        if now - before < 0.05:  # under a tenth of a core
            return
        before = now


async def _fleets(lab: Lab, devices: list[Device], s: Settings, plan: list[tuple[int, float, int]],
                  rotate_from: int = 0, project: tuple[tuple[int, float], ...] = (),
                  timeout: float | None = None) -> list[dict[str, Any]]:
    """Each (N, rate, client processes) of ``plan`` against nginx, the threaded stdlib server and
    tinyota, all set up for ``devices``; then the one-thread server, projected to each of ``project``."""
    tiny = lab.tinyota(devices, prefix="slow")
    fw = tiny.add_release("1.0.0", s.slow_size)
    nginx, threaded, single = lab.http_peers(devices, [fw])
    runs: list[dict[str, Any]] = []
    with running(tiny, nginx, threaded, *([single] if project else [])):
        tiny.wait_mqtt()
        tiny.target(fw.version)
        peers = [nginx, threaded, tiny]
        for i, (n, rate, processes) in enumerate(plan, start=rotate_from):
            # Rotate the order per N so drift in the machine's load does not always hit one server.
            for peer in peers[i % 3:] + peers[:i % 3]:
                for other in peers:  # the last one may still be busy with what its run left behind
                    await settled(other)
                result = await fleet_run(peer, fw, devices[:n], rate, processes, timeout)
                runs.append(result)
                print(f"  slow fleet N={n:<5} {peer.name:<16} ok={result['ok']}/{n} "
                      f"×ideal={result['completion_ratio']:.3f} rss={result['peak_rss_mb']:.0f} MB "
                      f"cpu={result['cpu_s']:.2f} s clients={result['client_cpu_s']:.1f} s "
                      f"load={result['load_average'][0]:.2f}", flush=True)
        if project:
            runs += await single_thread_projection(single, fw, devices[:s.single_probe], s.slow_rate, project)
    return runs


async def run(lab: Lab, s: Settings) -> dict[str, Any]:
    # The large fleet gets servers of its own, set up for its 5,000 devices, so the smaller rows keep
    # measuring servers that know 1,000 (tinyota's clock visits every device it knows, nginx reads
    # its htpasswd file line by line).
    small = [(n, s.slow_rate, 1) for n in s.slow_ns]
    project = (*((n, s.slow_rate) for n in s.slow_ns), (s.large_n, s.large_rate))
    runs = await _fleets(lab, fleet(max(s.slow_ns)), s, small, project=project)
    runs += await _fleets(lab, fleet(s.large_n), s, [(s.large_n, s.large_rate, s.large_client_processes)],
                          rotate_from=len(small), timeout=s.large_timeout_s)
    return {"image_bytes": s.slow_size, "rate_bytes_s": s.slow_rate, "ideal_s": s.slow_size / s.slow_rate,
            "large_n": s.large_n, "large_rate_bytes_s": s.large_rate, "large_ideal_s": s.slow_size / s.large_rate,
            "runs": runs}
