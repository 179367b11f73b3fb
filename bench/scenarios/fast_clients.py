"""2. Fast clients: devices on good Wi-Fi, back to back, ``Connection: close`` as the ESP cores do.

This machine is shared and noisy, so absolute MB/s mean little. Every server is up for the whole
scenario, and each cell (image size × concurrency) runs every server once per round, in an order
that rotates per round; tinyota's ratio to each peer is taken within a round (neighbours in time
share the same noise) and the median over rounds is reported.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from bench.clients import fast_get, fast_run
from bench.lab import Lab, running
from bench.peers import Peer, fleet
from bench.settings import Settings
from bench.util import MiB, median


async def run(lab: Lab, s: Settings) -> dict[str, Any]:
    # Each image size gets its own devices: tinyota serves a device only its target release.
    per_size = max(64, max(s.fast_concurrency))
    devices = fleet(per_size * len(s.fast_sizes))
    tiny = lab.tinyota(devices, prefix="fast")
    firmware = {size: tiny.add_release(f"1.{i}.0", size) for i, size in enumerate(s.fast_sizes, start=1)}
    users = {size: devices[i * per_size:(i + 1) * per_size] for i, size in enumerate(s.fast_sizes)}
    peers: list[Peer] = [*lab.http_peers(devices, list(firmware.values())), tiny]
    runs: list[dict[str, Any]] = []
    with running(*peers):
        tiny.wait_mqtt()
        for size, fw in firmware.items():
            tiny.target(fw.version, users[size])
            # While an attempt is open, each whole download records that it was served (a flush
            # to disk). Let every device download once and report the version, as after an
            # update, so the measured downloads are what they were before: streaming only.
            for device in users[size]:
                await fast_get(tiny.port, fw, device)
            await tiny.report_running(fw.version, users[size])
        for size, fw in firmware.items():  # warm up: page cache, first-request imports, MD5 check once
            for peer in peers:
                ok, _, error = await fast_get(peer.port, fw, users[size][0], verify=True)
                if not ok:
                    raise RuntimeError(f"{peer.name} served {fw.url_path} wrongly: {error}")
        for size, fw in firmware.items():
            for c in s.fast_concurrency:
                for rep in range(s.fast_repeats):
                    order = peers[rep % len(peers):] + peers[:rep % len(peers)]
                    for peer in order:
                        cpu = peer.cpu()
                        r = await fast_run(peer.port, fw, users[size], concurrency=c, requests=s.fast_request_cap,
                                           time_cap=s.fast_seconds)
                        cpu = peer.cpu() - cpu
                        runs.append({"server": peer.name, "size": size, "concurrency": c, "round": rep,
                                     "mb_s": r.mb_per_s, "req_s": r.requests_per_s, "requests": r.requests,
                                     "ok": r.ok, "errors": r.errors, "cpu_s": cpu})
                cell = [x for x in runs if (x["size"], x["concurrency"]) == (size, c)]
                mb = {p.name: median([x["mb_s"] for x in cell if x["server"] == p.name]) or 0.0 for p in peers}
                print(f"  fast {size / MiB:g} MiB c={c:<3} MB/s: " + "  ".join(f"{k}={v:.0f}" for k, v in mb.items()),
                      flush=True)
    return {"servers": [p.name for p in peers], "runs": runs, "cells": summarise(runs)}


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per cell: each server's median MB/s and req/s, and tinyota's paired ratios to the peers."""
    by_cell: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        by_cell[(r["size"], r["concurrency"])].append(r)
    cells = []
    for (size, c), rows in sorted(by_cell.items()):
        servers = sorted({r["server"] for r in rows})
        cell: dict[str, Any] = {"size": size, "concurrency": c, "all_ok": all(r["ok"] == r["requests"] for r in rows)}
        for name in servers:
            mine = [r for r in rows if r["server"] == name]
            cell[name] = {"mb_s": median([r["mb_s"] for r in mine]), "req_s": median([r["req_s"] for r in mine]),
                          # The server's CPU per answered request (psutil's 10 ms ticks: a median of rounds).
                          "cpu_ms": median([1000 * r["cpu_s"] / r["ok"] for r in mine if "cpu_s" in r and r["ok"]])}
        rounds = sorted({r["round"] for r in rows})
        for peer in ("nginx", "stdlib-threaded", "stdlib-single"):
            pairs = []
            for rnd in rounds:
                speed = {r["server"]: r["mb_s"] for r in rows if r["round"] == rnd}
                if speed.get(peer):
                    pairs.append(speed["tinyota"] / speed[peer])
            cell[f"tinyota_vs_{peer}"] = median(pairs)
        cells.append(cell)
    return cells
