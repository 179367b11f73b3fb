"""``python -m bench``: every scenario against its peers, results to bench/results/.

    python -m bench              the full run (about ten minutes), results in bench/results/
    python -m bench --quick      a small run for CI (well under a minute), results in bench/results/quick.tmp/
    python -m bench --only slow_fleet fast_clients
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import report
from bench.lab import Lab
from bench.peers import nginx_available
from bench.scenarios import SCENARIOS
from bench.settings import FULL, QUICK, Settings
from bench.util import machine, raise_fd_limit

RESULTS = Path(__file__).resolve().parent / "results"
MOSQUITTO = Path("/usr/sbin/mosquitto")


async def run_all(settings: Settings, names: list[str], keep: bool) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": machine(), "settings": asdict(settings)}
    with Lab(keep=keep) as lab:
        if keep:
            print(f"work directory (kept): {lab.root}")
        for name in names:
            print(f"{name} …", flush=True)
            started = time.monotonic()
            mark = lab.cpu_mark()
            try:
                results[name] = await SCENARIOS[name](lab, settings)
            except Exception as exc:  # one broken scenario must not lose the others' figures
                traceback.print_exc()
                results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            results[name]["cpu"] = lab.cpu_since(mark)
            print(f"{name}: {time.monotonic() - started:.0f} s", flush=True)
    return results


def render(out: Path) -> int:
    """The report again from stored figures, after a change to how it is written (not to what is measured)."""
    results = json.loads((out / "results.json").read_text())
    results.pop("targets", None)  # recomputed from the figures
    stored: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in results["settings"].items()}
    settings = Settings(**stored)
    report.write(results, settings, out)
    print(f"rewrote {out / 'results.md'} and the plots from {out / 'results.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small fleets, few requests: for CI")
    parser.add_argument("--only", nargs="+", choices=list(SCENARIOS), metavar="SCENARIO",
                        help=f"run only these: {', '.join(SCENARIOS)}")
    parser.add_argument("--out", type=Path, help="results directory (default: bench/results, "
                        "or bench/results/quick.tmp with --quick)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (configs, server logs)")
    parser.add_argument("--render", type=Path, metavar="DIR",
                        help="run nothing: rewrite DIR's results.md and plots from its results.json")
    args = parser.parse_args(argv)
    if args.render:
        return render(args.render)

    have = {"nginx": nginx_available(), "mosquitto": bool(shutil.which("mosquitto")) or MOSQUITTO.exists()}
    missing = [tool for tool, present in have.items() if not present]
    if missing:
        print(f"the bench needs {' and '.join(missing)}: apt-get install {' '.join(missing)} "
              "(./dev test installs both)", file=sys.stderr)
        return 2
    settings = QUICK if args.quick else FULL
    out = args.out or (RESULTS / "quick.tmp" if args.quick else RESULTS)
    fds = raise_fd_limit()
    # SIGTERM (a CI timeout, kill) unwinds like Ctrl-C, so every server the bench started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(f"{'quick' if settings.quick else 'full'} run, file descriptors: {fds}, results: {out}", flush=True)
    started = time.monotonic()
    results = asyncio.run(run_all(settings, args.only or list(SCENARIOS), args.keep))
    results["run_seconds"] = round(time.monotonic() - started, 1)
    marks = report.write(results, settings, out)
    print()
    print((out / "results.md").read_text())
    failed = [name for name in SCENARIOS if isinstance(results.get(name), dict) and "error" in results[name]]
    if failed:
        print(f"scenarios that failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"done in {results['run_seconds']:.0f} s; targets met: {sum(t.met is True for t in marks)}/{len(marks)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
