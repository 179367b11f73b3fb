"""1. Slow fleet: N devices at once, each reading the image at ESP speed.

The question is not raw speed but whether one slow device slows the others: the ideal fleet time
is one device's time (size ÷ rate), and a server that streams with backpressure gets close to it.
The one-thread stdlib server serves devices one after another, so running 1000 ten-second
downloads in series would take three hours; it gets ``single_probe`` devices at once instead, and
its fleet time is projected from the time each of them took.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench.clients import paced_download
from bench.lab import Lab, running
from bench.peers import Device, Firmware, Peer, fleet
from bench.settings import Settings
from bench.util import MiB, PeakRss, percentile


async def fleet_run(peer: Peer, fw: Firmware, devices: list[Device], rate: float) -> dict[str, Any]:
    ideal = fw.size / rate
    loop = asyncio.get_running_loop()
    async with PeakRss(peer.pid) as rss:
        started = loop.time()
        downloads = await asyncio.gather(*(
            paced_download(peer.port, fw, d, rate=rate, timeout=3 * ideal + 60) for d in devices))
        elapsed = loop.time() - started
    ttfbs = [d.ttfb for d in downloads if d.ttfb is not None]
    # Once its first byte arrived, did each download run at device speed? This separates the
    # server's streaming from how long the whole fleet waited to be let in.
    transfers = [d.seconds - d.ttfb for d in downloads if d.ok and d.seconds is not None and d.ttfb is not None]
    errors = sorted({d.error for d in downloads if d.error})
    return {
        "server": peer.name, "n": len(devices),
        "all_ok": all(d.ok for d in downloads), "ok": sum(d.ok for d in downloads),
        "completion_ratio": elapsed / ideal,
        "ttfb_p50_s": percentile(ttfbs, 50), "ttfb_p99_s": percentile(ttfbs, 99),
        "slowest_transfer_ratio": max(transfers) / ideal if transfers else None,
        "peak_rss_mb": rss.peak / MiB, "errors": errors[:3],
    }


async def single_thread_projection(peer: Peer, fw: Firmware, devices: list[Device], rate: float,
                                   ns: tuple[int, ...]) -> list[dict[str, Any]]:
    """Run a few devices at once against the one-thread server and project to each N."""
    probe = await fleet_run(peer, fw, devices, rate)
    ideal = fw.size / rate
    # Served one after another: each device adds one download time to the fleet's.
    per_device = probe["completion_ratio"] * ideal / len(devices)
    projected = []
    for n in ns:
        projected.append({
            "server": peer.name, "n": n, "projected": True,
            "all_ok": None,  # unknown: with N far above the listen queue, connects time out in reality
            "completion_ratio": n * per_device / ideal,
            # The i-th device waits for the i-1 before it.
            "ttfb_p50_s": (n / 2) * per_device, "ttfb_p99_s": 0.99 * n * per_device,
            "slowest_transfer_ratio": probe["slowest_transfer_ratio"],
            "peak_rss_mb": probe["peak_rss_mb"], "errors": [],
            "measured_with": len(devices), "measured_completion_ratio": probe["completion_ratio"],
        })
    return projected


async def run(lab: Lab, s: Settings) -> dict[str, Any]:
    devices = fleet(max(s.slow_ns))
    tiny = lab.tinyota(devices, prefix="slow")
    fw = tiny.add_release("1.0.0", s.slow_size)
    nginx, threaded, single = lab.http_peers(devices, [fw])
    runs: list[dict[str, Any]] = []
    with running(tiny, nginx, threaded, single):
        tiny.wait_mqtt()
        tiny.target(fw.version)
        peers = [nginx, threaded, tiny]
        for i, n in enumerate(s.slow_ns):
            # Rotate the order per N so drift in the machine's load does not always hit one server.
            for peer in peers[i % 3:] + peers[:i % 3]:
                result = await fleet_run(peer, fw, devices[:n], s.slow_rate)
                runs.append(result)
                print(f"  slow fleet N={n:<5} {peer.name:<16} ok={result['ok']}/{n} "
                      f"×ideal={result['completion_ratio']:.3f} rss={result['peak_rss_mb']:.0f} MB", flush=True)
        runs += await single_thread_projection(single, fw, devices[:s.single_probe], s.slow_rate, s.slow_ns)
    return {"image_bytes": fw.size, "rate_bytes_s": s.slow_rate, "ideal_s": fw.size / s.slow_rate, "runs": runs}
