"""The ``tinyota`` command. Each subcommand is a small function; errors print as sentences."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tinyota_mqtt import __version__
from tinyota_mqtt.config import load_config, redact
from tinyota_mqtt.config.model import Config
from tinyota_mqtt.core.passwords import hash_password
from tinyota_mqtt.errors import TinyOTAError

log = logging.getLogger("tinyota")
DEFAULT_CONFIG = "config.yaml"


def _config(args: argparse.Namespace) -> Config:
    return load_config(Path(args.config))


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()),
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")


# -- commands ------------------------------------------------------------------------------------

def cmd_check_config(args: argparse.Namespace) -> int:
    config = _config(args)
    if args.show:
        print(json.dumps(redact(config), indent=2, default=str))
    print(f"ok: {args.config}: {len(config.devices)} devices in {len(config.groups)} groups, "
          f"{len(config.images)} images")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from tinyota_mqtt.runner import Overrides, Server

    config = _config(args)
    log.debug("config: %s", json.dumps(redact(config), default=str))
    server = Server(config, Overrides(host=args.host, port=args.port, mqtt_url=args.mqtt))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await server.start()
        host = args.host or config.server.host
        scheme = "https" if config.server.tls else "http"
        print(f"TinyOTA {__version__} serving on {scheme}://{host}:{server.port} "
              f"(devices are told {config.server.public_url}); "
              f"MQTT {server.mqtt_url or 'off'}. Ctrl-C stops.", flush=True)
        await stop.wait()
        log.info("stopping")
        await server.stop()

    asyncio.run(main())
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    from tinyota_mqtt.store import FirmwareStore

    config = _config(args)
    if args.server:
        # Another machine's server: upload through its admin API (it validates the same way).
        body = _admin_client(args, config).upload(Path(args.file), args.image, args.version, args.notes or "",
                                                  replace=args.replace, force=args.force)
        print(f"released {body['image']} {body['version']} on {args.server}: {body['size']} bytes, "
              f"md5 {body['md5']}")
        return 0
    if args.image not in config.images:
        raise TinyOTAError(f"image {args.image!r} is not in {args.config}",
                           "images: " + (", ".join(config.images) or "(none)"))
    store = FirmwareStore(config.server.store, max_size=config.server.limits.max_upload_bytes)
    release = store.add_file(Path(args.file), args.image, args.version, args.notes or "",
                             replace=args.replace, force=args.force, platform=config.images[args.image].platform)
    print(f"released {release.image} {release.version}: {release.size} bytes, md5 {release.md5}")
    auto = [g.name for g in config.groups.values() if g.image == release.image and g.auto_update]
    if auto:
        print(f"the running server announces it to group(s) {', '.join(auto)} within a second")
    else:
        print(f"no group updates {release.image} automatically: "
              f"`tinyota install --group G --version {release.version}` announces it")
    return 0


def cmd_releases(args: argparse.Namespace) -> int:
    from tinyota_mqtt.store import FirmwareStore

    config = _config(args)
    releases = FirmwareStore(config.server.store).releases(args.image)
    if args.json:
        print(json.dumps([r.to_json() for r in releases], indent=2))
        return 0
    rows = [(r.image, r.version, str(r.size), r.firmware.summary() if r.firmware else "unchecked (forced)",
             r.md5, r.created, r.notes[:40]) for r in releases]
    _table(("IMAGE", "VERSION", "SIZE", "FIRMWARE", "MD5", "CREATED", "NOTES"), rows)
    return 0


def cmd_hash_password(args: argparse.Namespace) -> int:
    password = args.password
    if password is None:
        password = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else \
            getpass.getpass("password: ")
    if not password:
        raise TinyOTAError("empty password")
    print(hash_password(password))
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from tinyota_mqtt.signing import generate

    signer = generate(Path(args.file))
    print(f"wrote {args.file} (keep it private; set server.signing_key to it)")
    print(f"public key (ECDSA P-256 point, hex), for devices: {signer.public_key}")
    return 0


def _open_registry(config: Config) -> Any:
    from tinyota_mqtt.service import Service

    if not config.server.state.exists():
        raise TinyOTAError(f"no state file at {config.server.state} yet",
                           "start `tinyota serve` once; it creates it")
    return Service(config)


def _ago(stamp: float | None) -> str:
    if stamp is None:
        return "never"
    seconds = max(0, int(time.time() - stamp))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def cmd_status(args: argparse.Namespace) -> int:
    service = _open_registry(_config(args))
    views = [service.device_view(d) for d in service.device_ids()]
    if args.json:
        print(json.dumps(views, indent=2))
        return 0
    rows = []
    for v in views:
        attempt = v["attempt"]
        state = v["state"] or "-"
        if attempt and attempt["version"] == v["target"]:
            state = attempt["state"] if attempt["state"] != "pending" else "announced"
        progress = f"{v['progress']}%" if v["progress"] is not None else ""
        online = {True: "yes", False: "no", None: "?"}[v["online"]]
        group = v["group"] or ("(unknown)" if not v["known"] else "-")
        rows.append((v["id"], group, online, v["installed"] or "?", v["target"] or "-", state, progress,
                     _ago(v["last_seen"])))
    _table(("DEVICE", "GROUP", "ONLINE", "INSTALLED", "TARGET", "STATE", "PROGRESS", "LAST SEEN"), rows)
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    service = _open_registry(_config(args))
    history = service.registry.history(args.device, args.limit)
    if args.json:
        print(json.dumps([asdict(a) for a in history], indent=2))
        return 0
    rows = [(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(a.created)), a.from_version or "?",
             a.version, a.state, a.error or "") for a in history]
    _table(("WHEN", "FROM", "TO", "OUTCOME", "ERROR"), rows)
    return 0


def _admin_client(args: argparse.Namespace, config: Config) -> Any:
    from tinyota_mqtt.apiclient import AdminClient, local_url

    admin = config.server.admin
    password = admin.password.plain.reveal() if admin.password.plain else None
    if password is None:
        import os

        password = os.environ.get("TINYOTA_ADMIN_PASSWORD")
        if password is None:
            raise TinyOTAError("the admin password in the config is hashed, so the CLI cannot use it",
                               "set TINYOTA_ADMIN_PASSWORD in the environment")
    return AdminClient(args.server or local_url(config), admin.username, password)


def cmd_install(args: argparse.Namespace) -> int:
    config = _config(args)
    client = _admin_client(args, config)
    body = {"version": args.version} if args.version else {}
    if bool(args.group) == bool(args.devices):
        raise TinyOTAError("name devices or one --group, not both and not neither")
    targets = [("groups", args.group)] if args.group else [("devices", d) for d in args.devices]
    for kind, name in targets:
        answer = client.request("POST", f"/api/{kind}/{name}/install", body)
        for attempt in answer["attempts"]:
            print(f"announced {attempt['version']} to {attempt['device']} (attempt {attempt['id']})")
        if not answer["attempts"]:
            print(f"{name}: nothing to announce (already on that version)")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    config = _config(args)
    client = _admin_client(args, config)
    if bool(args.group) == bool(args.devices):
        raise TinyOTAError("name devices or one --group, not both and not neither")
    targets = [("groups", args.group)] if args.group else [("devices", d) for d in args.devices]
    for kind, name in targets:
        answer = client.request("POST", f"/api/{kind}/{name}/cancel")
        print(f"cancelled: {', '.join(answer['cancelled']) or 'nothing was pending'}")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from tinyota_mqtt.mqtt.simulator import run_simulation

    config = _config(args)
    passwords = {}
    for item in args.password or []:
        device, sep, password = item.partition("=")
        if not sep or not device:
            raise TinyOTAError(f"--password takes ID=PASSWORD, got {device!r}")
        passwords[device] = password
    if not 0 <= args.fail_rate <= 1:
        raise TinyOTAError("--fail-rate is a share from 0 to 1, e.g. 0.05")
    return run_simulation(config, devices=args.devices, group=args.group, broker=args.mqtt,
                          version=args.version, duration=args.duration, passwords=passwords,
                          fail=[d for d in (args.fail or "").split(",") if d], fail_rate=args.fail_rate)


def cmd_demo(args: argparse.Namespace) -> int:
    from tinyota_mqtt.demo import run_demo

    if args.log_level == "info":  # the demo prints its own story; keep the log to problems
        logging.getLogger("tinyota").setLevel(logging.WARNING)
    if args.rollout:
        from tinyota_mqtt.demo_rollout import run_rollout_demo

        return run_rollout_demo(Path(args.config), port=args.port)
    return run_demo(Path(args.config), port=args.port, keep_running=not args.once)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    for row in [headers, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


# -- argument parsing ----------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinyota", description=__doc__)
    parser.add_argument("--version", action="version", version=f"tinyota {__version__}")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Any, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file (default: config.yaml)")
        p.set_defaults(fn=fn)
        return p

    p = add("serve", cmd_serve, "run the firmware server and the MQTT side")
    p.add_argument("--host", help="listen address (overrides server.host)")
    p.add_argument("--port", type=int, help="listen port (overrides server.port)")
    p.add_argument("--mqtt", help="broker URL (overrides mqtt.url); 'none' runs HTTP only")

    p = add("check-config", cmd_check_config, "validate the config file and print ok or the errors")
    p.add_argument("--show", action="store_true", help="also print the config, secrets masked")

    p = add("release", cmd_release, "put a firmware file in the store as a new release")
    p.add_argument("file")
    p.add_argument("--image", required=True)
    p.add_argument("--version", required=True, dest="version")
    p.add_argument("--notes", help="release notes, shown in Home Assistant and the dashboard")
    p.add_argument("--replace", action="store_true", help="overwrite an existing release")
    p.add_argument("--force", action="store_true",
                   help="skip the image checks: chip, truncation/checksum and embedded version")
    p.add_argument("--server", help="upload to the server at this URL (admin API) instead of the local store")

    p = add("releases", cmd_releases, "list the releases in the store")
    p.add_argument("--image")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("hash-password", help="print a PBKDF2 hash to put in the config instead of a password")
    p.add_argument("password", nargs="?", help="read from the terminal or stdin when left out")
    p.set_defaults(fn=cmd_hash_password)

    p = sub.add_parser("keygen", help="make an ECDSA P-256 key for signing announcements (server.signing_key)")
    p.add_argument("file")
    p.set_defaults(fn=cmd_keygen)

    p = add("status", cmd_status, "show every device: online, installed, target, update state")
    p.add_argument("--json", action="store_true")

    p = add("history", cmd_history, "show one device's update attempts, newest first")
    p.add_argument("device")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true")

    for name, fn, text in (("install", cmd_install, "announce a release to devices or a group now"),
                           ("cancel", cmd_cancel, "withdraw a pending announcement")):
        p = add(name, fn, text)
        p.add_argument("devices", nargs="*")
        p.add_argument("--group")
        if name == "install":
            p.add_argument("--version", dest="version", help="default: the latest release (older = rollback)")
        p.add_argument("--server", help="server URL (default: from the config)")

    p = add("simulate", cmd_simulate, "run simulated devices that speak the device contract")
    p.add_argument("--devices", type=int,
                   help="how many (default: every configured device, of --group, whose password is known)")
    p.add_argument("--group", help="simulate this group's devices (default: every configured device)")
    p.add_argument("--mqtt", help="broker URL (default: from the config)")
    p.add_argument("--version", dest="version", default="1.0.0", help="version they start on")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--password", action="append", metavar="ID=PASSWORD",
                   help="the password of a device whose config entry is hashed (repeatable)")
    p.add_argument("--fail", metavar="ID[,ID]", help="these devices fail every update (after the download)")
    p.add_argument("--fail-rate", dest="fail_rate", type=float, default=0.0, metavar="SHARE",
                   help="this share of the devices (0..1, stable by id) fail every update too")

    p = add("demo", cmd_demo, "one command: server, embedded broker, a simulated fleet, a release")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--once", action="store_true", help="exit when the demo update is confirmed")
    p.add_argument("--rollout", action="store_true", help="a staged rollout halting on a failing canary instead")

    from tinyota_mqtt import cli_rollout
    cli_rollout.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.log_level)
    try:
        return int(args.fn(args))
    except TinyOTAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
