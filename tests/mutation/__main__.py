"""Mutation testing for TinyOTA-MQTT: ``./dev mutate [scope ...]`` (docs/testing.md).

mutmut (3.x) changes one thing at a time in the code (``<`` for ``<=``, a constant, a dropped
argument) and runs the tests that reach the changed function. A change no test notices is a
*survivor*: either a promise with no test that can fail, or a change that makes no difference
(an *equivalent* mutant). Every survivor must be killed by a real test or written down in
``tests/mutation/equivalent.txt`` with the reason it makes no difference. This script runs
mutmut in a work directory of its own (the checkout is never touched), prints the score per
module, and exits 1 if a survivor is neither killed nor written down.

An entry in equivalent.txt is keyed by the function and the changed line, not by mutmut's
mutant number, so it stays valid when unrelated code moves. Entries look like:

    tinyota_mqtt.core.protocol.parse_status: raise ProtocolError(f"... {str(exc)[:81]}") from None
        why: the cut of an echoed bad value is for log width; 80 or 81 characters say the same
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EQUIVALENT = Path(__file__).resolve().parent / "equivalent.txt"


@dataclass(frozen=True)
class Scope:
    modules: tuple[str, ...]  # files to mutate, relative to the checkout
    tests: tuple[str, ...]  # the tests mutmut may run against them
    note: str


CORE = ("attempts", "retry", "policy", "protocol", "semver", "httpauth", "esp_headers", "passwords", "throttle",
        "forwarded", "hass", "tokens", "trust", "hass_rollout")
# image is clean against test_image_rules.py but stays out of CI: its 745 mutants would double the
# core run (docs/testing.md); rollout, clean too, would more than double it. tasmota and esphome are
# clean against core's tests with test_device_rules.py, but their 599 mutants took 124 s of CPU:
# more than the minute that would keep CI's run a few minutes.
CORE_MORE = ("image", "rollout", "tasmota", "esphome")
SCOPES = {
    # The pure rules: no I/O, fast tests; CI runs this one (tests/test_mutation.py).
    "core": Scope(tuple(f"tinyota_mqtt/core/{m}.py" for m in CORE),
                  ("tests/test_core.py", "tests/test_core_rules.py", "tests/test_trust_rules.py"),
                  "pure decisions and parsers; runs in CI"),
    # The service on real files: slower tests, so bound the run with --minutes.
    "fleet": Scope(("tinyota_mqtt/fleet/*.py", "tinyota_mqtt/service.py", "tinyota_mqtt/store.py",
                    "tinyota_mqtt/registry.py"),
                   ("tests/test_outcomes.py", "tests/test_store.py", "tests/test_views.py", "tests/test_publisher.py",
                    "tests/test_hass_publishing.py", "tests/test_events.py", "tests/test_announcer.py",
                    "tests/test_reports.py", "tests/test_registry.py", "tests/test_tokens.py",
                    "tests/test_rollouts_service.py", "tests/test_service.py"),
                   "the service, store and registry on real files; by hand, bounded"),
    # Pure modules by hand: not yet triaged, or too many mutants for CI's run.
    "core-more": Scope(tuple(f"tinyota_mqtt/core/{m}.py" for m in CORE_MORE),
                       ("tests/test_core.py", "tests/test_core_rules.py", "tests/test_image_rules.py",
                        "tests/test_rollout_core.py", "tests/test_views.py", "tests/test_device_rules.py"),
                       "pure modules by hand: image, rollout, tasmota and esphome, clean but too many mutants for CI"),
}


def mutmut_config(scope: Scope) -> str:
    quoted = ", ".join(json.dumps(p) for p in scope.modules)
    tests = ", ".join(json.dumps(t) for t in scope.tests)
    return (f"\n[tool.mutmut]\nsource_paths = [\"tinyota_mqtt\"]\nonly_mutate = [{quoted}]\n"
            f"pytest_add_cli_args_test_selection = [{tests}]\n"
            "pytest_add_cli_args = [\"-p\", \"no:cacheprovider\", \"-p\", \"tests.mutation.hypothesis_profile\", "
            "\"-q\", \"-x\", \"-m\", \"not slow\"]\n"
            "use_git_change_detection = false\n")


def prepare(workdir: Path, scope: Scope) -> None:
    """A fresh copy of the code and tests to mutate. mutmut's results are not kept between runs:
    it re-judges a mutant only when its function changes, not when a new test could kill it."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "mutmut-stats.json").unlink(missing_ok=True)
    for name in ("tinyota_mqtt", "tests", "mutants"):
        target = workdir / name
        if target.exists():
            shutil.rmtree(target)
        if name != "mutants":
            shutil.copytree(ROOT / name, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    text = (ROOT / "pyproject.toml").read_text()
    (workdir / "pyproject.toml").write_text(text + mutmut_config(scope))


def run_mutmut(workdir: Path, jobs: int, minutes: float | None) -> bool:
    """Run mutmut; True if it finished, False if the time bound stopped it (results so far count)."""
    mutmut = Path(sys.executable).with_name("mutmut")
    log = (workdir / "mutmut.log").open("wb")
    # Its own process group, so a time bound stops the workers too.
    proc = subprocess.Popen([str(mutmut), "run", "--max-children", str(jobs)], cwd=workdir, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        proc.wait(None if minutes is None else minutes * 60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGINT)  # mutmut saves what it has on Ctrl-C
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        return False
    finally:
        log.close()
    if proc.returncode != 0:
        tail = (workdir / "mutmut.log").read_bytes()[-3000:].decode(errors="replace")
        raise SystemExit(f"mutmut failed (exit {proc.returncode}); the end of {workdir}/mutmut.log:\n{tail}")
    return True


@dataclass(frozen=True)
class Mutant:
    name: str  # mutmut's: tinyota_mqtt.core.semver.x_parse__mutmut_3
    status: str
    module: str
    function: str  # readable: semver's parse, Version._key
    change: str  # the changed line(s), stripped

    @property
    def key(self) -> str:
        return f"{self.module}.{self.function}: {self.change}"


def _functions(path: Path) -> dict[str, list[str]]:
    """Each function's source lines by name (mutmut writes every mutant as a function)."""
    lines = path.read_text().splitlines()
    return {node.name: lines[node.lineno - 1:node.end_lineno] for node in ast.walk(ast.parse("\n".join(lines)))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}


def _readable(mangled: str) -> str:
    # mutmut names a method xǁClassǁmethod and a function x_function.
    if mangled.startswith("xǁ"):
        cls, _, method = mangled[2:].partition("ǁ")
        return f"{cls}.{method}"
    return mangled.removeprefix("x_")


def collect(workdir: Path) -> list[Mutant]:
    from mutmut.stats import status_by_exit_code  # the tool's own table of exit codes

    mutants: list[Mutant] = []
    for meta in sorted((workdir / "mutants").rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        functions = _functions(meta.with_suffix(""))
        for name, code in codes.items():
            module, _, mangled = name.rpartition(".")
            base, _, _number = mangled.rpartition("__mutmut_")
            orig = functions.get(f"{base}__mutmut_orig", [])
            mutated = functions.get(mangled, [])
            # The def lines differ by the names mutmut gives them; compare them without those,
            # so a changed default argument shows as its changed def line.
            plain = _readable(base).rpartition(".")[2]
            named = [*(line.replace(f"{base}__mutmut_orig", plain) for line in orig[:1]), *orig[1:]]
            renamed = [*(line.replace(mangled, plain) for line in mutated[:1]), *mutated[1:]]
            diff = [d for d in difflib.ndiff(named, renamed) if d[:2] in ("+ ", "- ")]
            added = [d[2:].strip() for d in diff if d.startswith("+ ")]
            change = " / ".join(added) if added else "del " + " / ".join(d[2:].strip() for d in diff)
            status = "not run" if code is None else status_by_exit_code[code]
            mutants.append(Mutant(name, status, module, _readable(base), change))
    return mutants


def load_equivalent() -> dict[str, str]:
    """key -> reason, from equivalent.txt (a key line, then an indented 'why:' line)."""
    entries: dict[str, str] = {}
    key = None
    for line in EQUIVALENT.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith(" "):
            if key is None:
                raise SystemExit(f"{EQUIVALENT}: a reason without a mutant: {line.strip()}")
            entries[key] = line.strip().removeprefix("why:").strip()
            key = None
        else:
            key = line.strip()
            entries[key] = ""
    missing = [k for k, why in entries.items() if not why]
    if missing:
        raise SystemExit(f"{EQUIVALENT}: entries without a reason: {missing}")
    return entries


DETECTED = ("killed", "timeout", "segfault", "caught by type check")


def report(mutants: list[Mutant], equivalent: dict[str, str], finished: bool) -> list[Mutant]:
    """Print the score per module; return the survivors nobody explained."""
    unexplained: list[Mutant] = []
    by_module: dict[str, Counter[str]] = {}
    for m in mutants:
        counts = by_module.setdefault(m.module, Counter())
        counts["total"] += 1
        if m.status in DETECTED:
            counts["killed"] += 1
        elif m.status in ("survived", "no tests") and m.key in equivalent:
            counts["equivalent"] += 1
        elif m.status in ("survived", "no tests"):
            counts["survived"] += 1
            unexplained.append(m)
        else:
            counts[m.status] += 1
    print(f"{'module':40} {'mutants':>8} {'killed':>7} {'equiv.':>7} {'survived':>9} {'score':>7}")
    for module, c in sorted(by_module.items()):
        judged = c["total"] - c["equivalent"] - c["not run"]
        score = f"{100 * c['killed'] / judged:.1f}%" if judged else "-"
        extra = "".join(f"  {k}: {v}" for k, v in c.items()
                        if k not in ("total", "killed", "equivalent", "survived"))
        print(f"{module:40} {c['total']:8} {c['killed']:7} {c['equivalent']:7} {c['survived']:9} {score:>7}{extra}")
    if not finished:
        print("stopped by the time bound: mutants 'not run' were not judged")
    seen = {m.key for m in mutants}
    stale = [k for k in equivalent if k not in seen and k.split(":")[0].rsplit(".", 1)[0] in by_module]
    if stale:
        print(f"\n{len(stale)} entries in {EQUIVALENT.name} match no mutant any more (the code changed); "
              "remove them:", *stale, sep="\n  ")
    if unexplained:
        print(f"\n{len(unexplained)} survivors: kill each with a test, or add it to {EQUIVALENT} with why "
              f"it makes no difference (`mutmut show <name>` in the work directory shows the diff):")
        for m in unexplained:
            print(f"{m.key}\n    why: ?   [{m.status}; {m.name}]")
    return unexplained


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./dev mutate", description=__doc__.split("\n\n")[0])
    parser.add_argument("scopes", nargs="*", default=["core"],
                        help="what to mutate: " + "; ".join(f"{k}: {s.note}" for k, s in SCOPES.items()))
    parser.add_argument("--workdir", type=Path, default=ROOT / ".mutants",
                        help="where to copy the code and keep mutmut's results (default: .mutants/)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--minutes", type=float, default=None, help="stop each scope after this long")
    parser.add_argument("--only", action="append", default=[], metavar="FILE",
                        help="mutate only these files of the scope (repeatable), e.g. tinyota_mqtt/fleet/guard.py; "
                             "its tests stay the scope's")
    args = parser.parse_args(argv)
    unknown = [s for s in args.scopes if s not in SCOPES]
    if unknown:
        parser.error(f"unknown scope {unknown[0]!r}: choose from {', '.join(SCOPES)}")
    equivalent = load_equivalent()
    failed = False
    for name in args.scopes:
        scope = SCOPES[name]
        if args.only:
            outside = [f for f in args.only if not any(Path(f).match(m) for m in scope.modules)]
            if outside:
                parser.error(f"{outside[0]} is not in scope {name!r} ({', '.join(scope.modules)})")
            scope = Scope(tuple(args.only), scope.tests, scope.note)
        workdir = args.workdir / name
        print(f"== {name}: {scope.note} (work directory {workdir})", flush=True)
        started = time.monotonic()
        prepare(workdir, scope)
        finished = run_mutmut(workdir, args.jobs, args.minutes)
        print(f"mutmut ran {time.monotonic() - started:.0f} s", flush=True)
        failed |= bool(report(collect(workdir), equivalent, finished))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
