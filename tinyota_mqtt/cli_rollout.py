"""``tinyota rollout …``: start and steer staged rollouts through the running server's admin API.

Registered by cli.py's parser with ``cli_rollout.register(sub)``. Every subcommand is one API call.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from tinyota_mqtt.errors import TinyOTAError


def _client(args: argparse.Namespace) -> Any:
    from tinyota_mqtt.cli import _config, _needs_server

    return _needs_server(args, _config(args), "rollout")


def _when(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) if stamp else "-"


def _print_status(body: dict[str, Any]) -> None:
    counts = body["counts"]
    print(f"rollout {body['id']}: {body['image']} {body['version']} to {', '.join(body['groups'])} — "
          f"{body['state']}, wave {body['wave']} of {len(body['waves'])}")
    if body.get("reason"):
        print(f"  reason: {body['reason']}")
    print(f"  policy: {body['policy']}")
    if "window_open" in body:
        print(f"  window: {'open now' if body['window_open'] else 'closed; opens ' + _when(body['next_window'])}")
    print(f"  devices: {body['devices']}: {counts['succeeded']} succeeded, {counts['failed']} failed, "
          f"{counts['announced']} in progress, {counts['retry']} waiting for a retry, {counts['waiting']} waiting, "
          f"{counts['cancelled']} cancelled")
    for wave in body["waves"]:
        print(f"  wave {wave['wave']}: {wave['devices']} device(s): {wave['succeeded']} ok, {wave['failed']} failed, "
              f"{wave['announced']} in progress, {wave['queued']} waiting")
    for entry in body.get("history", []):
        print(f"  {_when(entry['at'])}  {entry['who']}: {entry['what']}")


def cmd_start(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"image": args.image, "version": args.version, "groups": args.group or []}
    for key in ("waves", "halt_at", "advance_at", "window"):
        if getattr(args, key) is not None:
            body[key] = getattr(args, key)
    for key in ("halt_min", "soak"):
        if getattr(args, key) is not None:
            body[key] = getattr(args, key)
    answer = _client(args).request("POST", "/api/rollouts", body)
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    _print_status(answer)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    answer = _client(args).request("GET", "/api/rollouts")
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    if not answer:
        print("no rollouts yet: `tinyota rollout start IMAGE VERSION` starts one")
        return 0
    from tinyota_mqtt.cli import _table

    rows = [(r["id"], r["image"], r["version"], ",".join(r["groups"]), r["state"], f"{r['wave']}/{len(r['waves'])}",
             f"{r['counts']['succeeded']}/{r['devices']}", str(r["counts"]["failed"]), r["started_by"],
             _when(r["created"]), (r["reason"] or "")[:60]) for r in answer]
    _table(("ID", "IMAGE", "VERSION", "GROUPS", "STATE", "WAVE", "OK", "FAILED", "BY", "STARTED", "REASON"), rows)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    client = _client(args)
    rollout_id = args.id
    if rollout_id is None:
        listed = client.request("GET", "/api/rollouts")
        if not listed:
            raise TinyOTAError("no rollouts yet", "`tinyota rollout start IMAGE VERSION` starts one")
        live = [r for r in listed if r["state"] not in ("completed", "aborted")]
        rollout_id = (live or listed)[0]["id"]
    answer = client.request("GET", f"/api/rollouts/{rollout_id}")
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    _print_status(answer)
    return 0


def cmd_control(args: argparse.Namespace) -> int:
    answer = _client(args).request("POST", f"/api/rollouts/{args.id}/{args.action}")
    print(f"rollout {answer['id']} is {answer['state']}" + (f": {answer['reason']}" if answer.get("reason") else ""))
    return 0


def register(sub: Any) -> None:
    """Add ``rollout`` and its subcommands to cli.py's subparsers."""
    top = sub.add_parser("rollout", help="staged rollouts: waves, halts, windows (docs/rollouts.md)",
                         description="start, watch, pause, resume or abort staged rollouts on the running server")
    # -c before or after the action: the action's own takes no default, so it never hides the other.
    top.add_argument("-c", "--config", default="config.yaml", metavar="FILE",
                     help="config file (default: config.yaml)")
    commands = top.add_subparsers(dest="rollout_command", required=True, metavar="ACTION",
                                  help="start, list, status, pause, resume or abort")

    def add(name: str, fn: Any, text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = commands.add_parser(name, help=text, description=text)
        p.add_argument("-c", "--config", default=argparse.SUPPRESS, metavar="FILE",
                       help="config file (default: config.yaml)")
        p.add_argument("--server", help="server URL (default: from the config)")
        p.set_defaults(fn=fn)
        return p

    p = add("start", cmd_start, "start a rollout of a release to groups, wave by wave")
    p.add_argument("image", help="the image to roll out, as named in the config")
    p.add_argument("version", help="its release to roll out, e.g. 1.4.0")
    p.add_argument("--group", action="append", help="a group of the image (repeatable; default: every group of it)")
    p.add_argument("--waves", help="e.g. 1,25%%,rest or kitchen-1,50%%,rest (sizes count from the start)")
    p.add_argument("--halt-at", dest="halt_at", help="halt when this share of ended attempts failed, e.g. 20%% "
                   "(or 'never')")
    p.add_argument("--halt-min", dest="halt_min", type=int, help="...once at least this many ended (default 1)")
    p.add_argument("--advance-at", dest="advance_at", help="share of a wave that must succeed (default 100%%)")
    p.add_argument("--soak", type=float, help="seconds to wait after a wave succeeded")
    p.add_argument("--window", help="maintenance window, e.g. 'Mon-Fri 02:00+3h Europe/Berlin'")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = add("list", cmd_list, "list rollouts, newest first")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = add("status", cmd_status, "show one rollout (default: the newest live one)")
    p.add_argument("id", nargs="?", help="the rollout's id (`tinyota rollout list` shows them)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    for action, text in (("pause", "stop announcing; attempts already started finish"),
                         ("resume", "continue a paused or halted rollout where it stopped"),
                         ("abort", "end a rollout for good; attempts already started finish")):
        p = add(action, cmd_control, text)
        p.add_argument("id", help="the rollout's id (`tinyota rollout list` shows them)")
        p.set_defaults(action=action)
