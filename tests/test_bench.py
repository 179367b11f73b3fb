"""The benchmark's quick mode, end to end, so the bench code never rots.

It starts nginx, mosquitto, the stdlib baselines and tinyota itself, runs every scenario with
tiny fleets, and checks that the result files exist and that every figure the report promises is
there. It checks no speed: a CI machine's figures mean nothing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_quick_bench_writes_every_figure(tmp_path: Path) -> None:
    for tool in ("nginx", "mosquitto"):
        if not (shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists()):
            pytest.fail(f"{tool} is not installed: apt-get install {tool} (./dev test installs it)")
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=170)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    for name in ("results.json", "results.md", "fast_clients.png", "slow_fleet.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    results = json.loads((tmp_path / "results.json").read_text())
    for scenario in ("slow_fleet", "fast_clients", "fanout", "ingestion", "wave", "rollout", "footprint"):
        assert "error" not in results[scenario], results[scenario]
    assert results["machine"]["cores"] and results["machine"]["ram_gib"] and results["machine"]["date"]

    # Every target has a measured value (met or not: speed is not the test's business).
    targets = results["targets"]
    assert len(targets) == 18
    # CPU ratios may be "–": a tiny fleet costs nginx less than psutil's 10 ms tick.
    missing = [t["figure"] for t in targets if (t["value"] is None or t["met"] is None)
               and not t["key"].startswith("cpu_")]
    assert not missing, missing

    # Every table row the report shows has its figures: no "–" where a number belongs.
    slow = results["slow_fleet"]["runs"]
    assert {r["server"] for r in slow} == {"tinyota", "nginx", "stdlib-threaded", "stdlib-single"}
    assert all(r["completion_ratio"] and r["ttfb_p50_s"] is not None and r["peak_rss_mb"] for r in slow)
    assert all(r["all_ok"] for r in slow if not r.get("projected")), slow
    assert {r["n"] for r in slow} == {*results["settings"]["slow_ns"], results["settings"]["large_n"]}
    assert all(r["cpu_s"] is not None for r in slow)
    assert all(r["client_cpu_s"] is not None for r in slow if not r.get("projected"))
    for scenario in ("slow_fleet", "fast_clients", "fanout", "ingestion", "wave", "rollout", "footprint"):
        assert results[scenario]["cpu"]["servers"], scenario  # every scenario's servers' CPU seconds
    cells = results["fast_clients"]["cells"]
    assert cells and all(c["all_ok"] for c in cells), cells
    for cell in cells:
        for server in ("tinyota", "nginx", "stdlib-threaded", "stdlib-single"):
            assert cell[server]["mb_s"] > 0 and cell[server]["req_s"] > 0
        assert cell["tinyota_vs_nginx"] and cell["tinyota_vs_stdlib-threaded"] and cell["tinyota_vs_stdlib-single"]
    assert results["fanout"]["fanout_s"] > 0 and results["fanout"]["floor_s"] > 0
    assert [size["devices"] for size in results["fanout"]["sizes"]] == [50, 100]
    assert all(size["fanout_s"] > 0 and size["floor_s"] > 0 for size in results["fanout"]["sizes"])
    ingestion = results["ingestion"]
    assert ingestion["lost"] == 0 and ingestion["registry_complete"] == ingestion["devices"]
    assert results["wave"]["all_succeeded"]
    rollout = results["rollout"]
    assert rollout["halted"] and rollout["clean_all_on_version"] and rollout["release_to_halt_s"] is not None
    footprint = {r["server"]: r for r in results["footprint"]["servers"]}
    assert set(footprint) == {"tinyota", "nginx", "stdlib-threaded"}
    assert all(r["start_s"] and r["idle_rss_mb"] and r["rss_open_mb"] for r in footprint.values())
    assert all(r["open_downloads"] == results["footprint"]["devices"] for r in footprint.values())
    larger = results["footprint"]["larger"]
    assert larger["devices"] == 100 and larger["start_s"] and larger["idle_rss_mb"]

    report = (tmp_path / "results.md").read_text()
    for heading in ("## Targets", "## 1. Slow fleet", "## 2. Fast clients", "## 3. Announcement fan-out",
                    "## 4. Status ingestion", "## 5. Update wave", "## 6. Footprint"):
        assert heading in report
