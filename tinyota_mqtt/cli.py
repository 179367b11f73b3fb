"""The ``tinyota`` command. Each subcommand is a small function; errors print as sentences.

Commands that read or change live state ask the running server through its admin API; only
when no server answers do they read the files themselves (read-only) and say so on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import errno
import getpass
import json
import logging
import os
import re
import signal
import socket
import sys
import textwrap
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tinyota_mqtt import __version__
from tinyota_mqtt.apiclient import AdminClient, candidates, find_server
from tinyota_mqtt.config import load_config, redact
from tinyota_mqtt.config.model import ID_PATTERN, PLATFORMS, Config
from tinyota_mqtt.core.passwords import hash_password
from tinyota_mqtt.errors import NotFound, TinyOTAError

log = logging.getLogger("tinyota")
DEFAULT_CONFIG = "config.yaml"
DESCRIPTION = ("Private firmware updates for your ESP8266 and ESP32 devices: release a build, and "
               "TinyOTA tells the devices that should run it over MQTT, serves it to them and confirms "
               "each update. Start with `tinyota demo` (everything on this machine) or `tinyota init` "
               "(a config for your own network), then `tinyota serve`.")
EXIT_CODES = """exit status:
  0  done
  1  the command ran and found a problem (e.g. the demo's update did not complete)
  2  usage, config or environment error (bad option, unknown id, busy port, no server, ...)

`tinyota COMMAND --help` describes one command. Docs: README.md and docs/ in the repository."""
PASSWORDS_ENV = "TINYOTA_DEVICE_PASSWORDS"
_ID = re.compile(ID_PATTERN)


def _config(args: argparse.Namespace) -> Config:
    return load_config(Path(args.config))


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()),
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")


def _note(text: str) -> None:
    print(f"note: {text}", file=sys.stderr, flush=True)


def _prog() -> str:
    """How the user called us, for advice they can paste: `.venv/bin/tinyota` or `tinyota`."""
    called = sys.argv[0] if sys.argv else ""
    return called if Path(called).name == "tinyota" and os.sep in called else "tinyota"


# -- finding the server --------------------------------------------------------------------------

def _live(args: argparse.Namespace, config: Config, what: str) -> AdminClient | None:
    """The running server's client; None (said once on stderr) when no server answers."""
    client = find_server(config, getattr(args, "server", None))
    if client is None:
        where = " or ".join(candidates(config))
        _note(f"no server answers at {where}: showing {what} from the files (read-only)")
    return client


def _needs_server(args: argparse.Namespace, config: Config, command: str) -> AdminClient:
    client = find_server(config, getattr(args, "server", None))
    if client is None:
        raise TinyOTAError(f"no server answers at {' or '.join(candidates(config))}; {command} needs it",
                           f"start it (`{_prog()} serve -c {args.config}`) or pass --server URL")
    return client


def _device_id(device_id: str) -> str:
    if not _ID.fullmatch(device_id):
        raise NotFound(f"no device {device_id!r}: device ids are letters, digits, '-' and '_'")
    return device_id


# -- commands ------------------------------------------------------------------------------------

def cmd_check_config(args: argparse.Namespace) -> int:
    config = _config(args)
    if args.show:
        print(json.dumps(redact(config), indent=2, default=str))
    print(f"ok: {args.config}: {len(config.devices)} devices in {len(config.groups)} groups, "
          f"{len(config.images)} images")
    return 0


def _with_ports(config: Config, args: argparse.Namespace) -> Config:
    if args.mqtt_port is None:
        return config
    url = args.mqtt or config.mqtt.url
    if url != "embedded":
        raise TinyOTAError("--mqtt-port sets the embedded broker's port, but this server uses "
                           f"{url}", "name another broker with --mqtt URL instead")
    return dataclasses.replace(config, mqtt=dataclasses.replace(config.mqtt, embedded_port=args.mqtt_port))


def _listen_error(exc: OSError, host: str, port: int, option: str) -> TinyOTAError:
    if exc.errno == errno.EADDRINUSE:
        return TinyOTAError(f"cannot listen on {host}:{port}: something else already uses that port",
                            f"stop it (`ss -ltnp 'sport = :{port}'` shows what), or pass {option}")
    if exc.errno == errno.EACCES:
        return TinyOTAError(f"cannot listen on {host}:{port}: permission denied",
                            f"ports below 1024 need root: pass {option} with a port above 1024")
    if exc.errno == errno.EADDRNOTAVAIL:
        return TinyOTAError(f"cannot listen on {host}:{port}: this machine has no address {host}",
                            "set server.host to one of its addresses, or 0.0.0.0 for all of them")
    return TinyOTAError(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


def _check_free(host: str, port: int, option: str) -> None:
    """Fail before anything starts when a port is taken, rather than half-way through start-up.

    Binding again right after (as the server does) is fine: both set SO_REUSEADDR.
    """
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.create_server((host or "0.0.0.0", port), family=family):
            pass
    except OSError as exc:
        raise _listen_error(exc, host, port, option) from None


def _check_ports(config: Config, http_host: str, http_port: int, mqtt_url: str) -> None:
    _check_free(http_host, http_port, "--port")
    if mqtt_url == "embedded":
        _check_free(config.mqtt.embedded_host, config.mqtt.embedded_port, "--mqtt-port")


def cmd_serve(args: argparse.Namespace) -> int:
    from tinyota_mqtt.runner import Overrides, Server

    config = _with_ports(_config(args), args)
    if log.isEnabledFor(logging.DEBUG):  # the redacted copy of 5,000 devices costs a quarter second
        log.debug("config: %s", json.dumps(redact(config), default=str))
    server = Server(config, Overrides(host=args.host, port=args.port, mqtt_url=args.mqtt))
    host = args.host or config.server.host
    port = config.server.port if args.port is None else args.port
    _check_ports(config, host, port, args.mqtt or config.mqtt.url)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await server.start()
        except BaseException as exc:
            with contextlib.suppress(Exception):  # the first error is the one to tell
                await server.stop()  # whatever did start (broker, MQTT link) goes down with it
            if isinstance(exc, OSError) and exc.filename is None:
                raise _listen_error(exc, host, port, "--port") from exc
            raise
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
    file = Path(args.file)
    if not file.exists() or file.is_dir():
        raise TinyOTAError(f"no firmware file {file}" if not file.exists() else f"{file} is a directory",
                           "Arduino IDE: Sketch → Export Compiled Binary; PlatformIO: .pio/build/<env>/firmware.bin")
    client = find_server(config, args.server)
    if client is not None:
        body = client.upload(file, args.image, args.version, args.notes or "", replace=args.replace,
                             force=args.force)
        print(f"released {body['image']} {body['version']} on {client.url}: {body['size']} bytes, "
              f"md5 {body['md5']}")
        print(f"that server announces it now to its groups that update {body['image']} automatically; "
              f"for the others: `{_prog()} install --group G --version {body['version']}`")
        return 0
    if args.image not in config.images:
        raise TinyOTAError(f"image {args.image!r} is not in {args.config}",
                           "images: " + (", ".join(config.images) or "(none)"))
    store = FirmwareStore(config.server.store, max_size=config.server.limits.max_upload_bytes)
    release = store.add_file(file, args.image, args.version, args.notes or "",
                             replace=args.replace, force=args.force, platform=config.images[args.image].platform)
    print(f"released {release.image} {release.version} into {config.server.store}: {release.size} bytes, "
          f"md5 {release.md5}")
    _note(f"no server answers at {' or '.join(candidates(config))}; a server using this store "
          "announces it once it runs")
    return 0


def cmd_releases(args: argparse.Namespace) -> int:
    from tinyota_mqtt.snapshot import Snapshot
    from tinyota_mqtt.store import Release

    config = _config(args)
    client = _live(args, config, "releases")
    if client is not None:
        releases = client.get("/api/releases", image=args.image)
    else:
        if args.image is not None and args.image not in config.images:
            raise NotFound(f"no image {args.image!r} in {args.config}",
                           "images: " + (", ".join(config.images) or "(none)"))
        releases = [r.to_json() for r in Snapshot(config).releases(args.image)]
    if args.json:
        return _print_json(releases)
    listed = [Release.from_json(r) for r in releases]
    rows = [(r.image, r.version, str(r.size), r.firmware.summary() if r.firmware else "unchecked (forced)",
             r.md5, r.created, r.notes[:40]) for r in listed]
    _table(("IMAGE", "VERSION", "SIZE", "FIRMWARE", "MD5", "CREATED", "NOTES"), rows)
    return 0


def _read_secret(args: argparse.Namespace, prompt: str, *, confirm: bool) -> str:
    if args.password_file:
        text = sys.stdin.read() if args.password_file == "-" else Path(args.password_file).read_text()
        password = text.splitlines()[0] if text else ""
    elif not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(prompt)
        if confirm and getpass.getpass("again: ") != password:
            raise TinyOTAError("the two passwords differ")
    if not password:
        raise TinyOTAError("empty password")
    return password


def cmd_hash_password(args: argparse.Namespace) -> int:
    if args.password is not None:
        raise TinyOTAError("a password on the command line shows in `ps` and in your shell history",
                           "type it at the prompt, pipe it on stdin, or use --password-file FILE")
    print(hash_password(_read_secret(args, "password: ", confirm=True)))
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from tinyota_mqtt.signing import generate

    signer = generate(Path(args.file))
    print(f"wrote {args.file} (keep it private; set server.signing_key to it)")
    print(f"public key (ECDSA P-256 point, hex), for devices: {signer.public_key}")
    return 0


def _ago(stamp: float | None) -> str:
    if stamp is None:
        return "never"
    seconds = max(0, int(time.time() - stamp))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _hold(view: dict[str, Any]) -> str:
    if view.get("held"):
        return "held (cancelled)"
    if view.get("pinned"):
        return f"pinned {view['pinned']}"
    return "-"


def _error(view: dict[str, Any], width: int = 60) -> str:
    if not view.get("last_error"):
        return ""
    text = f"{_ago(view.get('last_error_at')) if view.get('last_error_at') else 'earlier'}: {view['last_error']}"
    return text if len(text) <= width else text[:width - 1] + "…"


def _device_views(args: argparse.Namespace, config: Config) -> list[dict[str, Any]]:
    from tinyota_mqtt.snapshot import Snapshot

    client = _live(args, config, "device states")
    if client is not None:
        views: list[dict[str, Any]] = client.get("/api/devices")
        return views
    snapshot = Snapshot(config)
    try:
        if not snapshot.has_state:
            _note(f"no state file at {config.server.state} yet: only the configured devices are known")
        return snapshot.devices()
    finally:
        snapshot.close()


def cmd_status(args: argparse.Namespace) -> int:
    views = _device_views(args, _config(args))
    if args.json:
        return _print_json(views)
    rows = []
    for v in views:
        attempt = v["attempt"]
        state = v["state"] or "-"
        if attempt and attempt["version"] == v["target"]:
            state = attempt["state"] if attempt["state"] != "pending" else "announced"
        progress = f"{v['progress']}%" if v["progress"] is not None else ""
        online = {True: "yes", False: "no", None: "?"}[v["online"]]
        group = v["group"] or ("-" if v["known"] else f"(unknown {v['kind']})" if v.get("kind") else "(unknown)")
        rows.append((v["id"], group, online, v["installed"] or "?", v["target"] or "-", state, progress,
                     _ago(v["last_seen"]), _hold(v), _error(v)))
    _table(("DEVICE", "GROUP", "ONLINE", "INSTALLED", "TARGET", "STATE", "PROGRESS", "LAST SEEN", "HOLD",
            "LAST ERROR"), rows)
    for v in views:
        if v.get("adopt"):  # a Tasmota device on the broker that the config does not name
            print(f"\n{v['id']} runs Tasmota {v['installed'] or '?'} and is not in the config; to manage it, "
                  f"add to {args.config} (docs/tasmota.md):\n{v['adopt']}")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    from tinyota_mqtt.snapshot import Snapshot

    config = _config(args)
    device = _device_id(args.device)
    client = _live(args, config, "history")
    if client is not None:
        history: list[dict[str, Any]] = client.get(f"/api/devices/{device}/history", limit=args.limit)
    else:
        snapshot = Snapshot(config)
        try:
            history = [asdict(a) for a in snapshot.history(device, args.limit)]
        finally:
            snapshot.close()
    if args.json:
        return _print_json(history)
    rows = [(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(a["created"])), a["from_version"] or "?",
             a["version"], a["state"], a["error"] or "") for a in history]
    _table(("WHEN", "FROM", "TO", "OUTCOME", "ERROR"), rows)
    return 0


def _targets(args: argparse.Namespace) -> list[tuple[str, str]]:
    if bool(args.group) == bool(args.devices):
        raise TinyOTAError("name devices or one --group, not both and not neither")
    if args.group:
        return [("groups", args.group)]
    return [("devices", _device_id(d)) for d in args.devices]


def cmd_install(args: argparse.Namespace) -> int:
    config = _config(args)
    targets = _targets(args)
    client = _needs_server(args, config, "install")
    body = {"version": args.version} if args.version else {}
    for kind, name in targets:
        answer = client.request("POST", f"/api/{kind}/{client.quoted(name)}/install", body)
        for attempt in answer["attempts"]:
            print(f"announced {attempt['version']} to {attempt['device']} (attempt {attempt['id']})")
        if not answer["attempts"]:
            print(f"{name}: nothing to announce (already on that version)")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    config = _config(args)
    targets = _targets(args)
    client = _needs_server(args, config, "cancel")
    for kind, name in targets:
        answer = client.request("POST", f"/api/{kind}/{client.quoted(name)}/cancel")
        print(f"cancelled: {', '.join(answer['cancelled']) or 'nothing was pending'}")
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    config = _config(args)
    if bool(args.unknown) == bool(args.devices):
        raise TinyOTAError("name devices or pass --unknown, not both and not neither")
    client = _needs_server(args, config, "forget")
    if args.unknown:
        ids = [v["id"] for v in client.get("/api/devices") if not v["known"]]
    else:
        ids = [_device_id(d) for d in args.devices]
    for device in ids:
        client.request("DELETE", f"/api/devices/{device}")
    print(f"forgot {len(ids)} device(s)" + (f": {', '.join(ids[:20])}" if ids else "")
          + (" …" if len(ids) > 20 else ""))
    return 0


def _parse_passwords(lines: Sequence[str], where: str) -> dict[str, str]:
    passwords = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        device, sep, password = line.strip().partition("=")
        if not sep or not device or not password:
            raise TinyOTAError(f"{where}:{number}: expected ID=PASSWORD")
        passwords[device] = password
    return passwords


def _positive_rate(text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected bytes per second, got {text!r}") from None
    if not rate > 0 or rate == float("inf"):
        raise argparse.ArgumentTypeError(f"the rate must be a positive number of bytes per second, got {text}")
    return rate


def cmd_simulate(args: argparse.Namespace) -> int:
    from tinyota_mqtt.mqtt.simulator import run_simulation

    config = _config(args)
    passwords = _parse_passwords(os.environ.get(PASSWORDS_ENV, "").split(), PASSWORDS_ENV)
    if args.password_file:
        passwords.update(_parse_passwords(Path(args.password_file).read_text().splitlines(), args.password_file))
    if args.password:
        _note(f"--password shows in `ps` to every user of this machine; prefer --password-file or {PASSWORDS_ENV}")
        passwords.update(_parse_passwords(args.password, "--password"))
    if not 0 <= args.fail_rate <= 1:
        raise TinyOTAError("--fail-rate is a share from 0 to 1, e.g. 0.05")
    return run_simulation(config, devices=args.devices, group=args.group, broker=args.mqtt,
                          version=args.version, duration=args.duration, passwords=passwords,
                          fail=[d for d in (args.fail or "").split(",") if d], fail_rate=args.fail_rate,
                          rate=args.rate)


def cmd_esphome_snippet(args: argparse.Namespace) -> int:
    from tinyota_mqtt.core import esphome

    params = esphome.params_from_config(_config(args), _device_id(args.device))
    for what, host in (("mqtt.url", params.broker_host), ("server.public_url", esphome.host_of(params.server_url))):
        if host in ("localhost", "127.0.0.1", "::1") or host.startswith("127."):
            _note(f"{what} names {host}, which the device cannot reach: give the config an address on your LAN")
    text = esphome.render(params)
    if args.output:
        Path(args.output).write_text(text)  # no secret in it: the passwords stay in secrets.yaml
        _note(f"wrote {args.output}; include it from the device's YAML (docs/esphome.md)")
    else:
        sys.stdout.write(text)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from tinyota_mqtt.demo import run_demo

    if args.log_level == "info" and not args.debug:  # the demo prints its own story; keep the log to problems
        logging.getLogger("tinyota").setLevel(logging.WARNING)
    config = _config(args)
    port = config.server.port if args.port is None else args.port
    if args.rollout:
        from tinyota_mqtt.demo_rollout import run_rollout_demo

        _check_free("127.0.0.1", port, "--port")
        return run_rollout_demo(Path(args.config), port=port, mqtt_port=args.mqtt_port)
    _check_free("127.0.0.1", port, "--port")
    _check_free(config.mqtt.embedded_host, config.mqtt.embedded_port if args.mqtt_port is None else args.mqtt_port,
                "--mqtt-port")
    try:
        return run_demo(Path(args.config), port=port, keep_running=not args.once, mqtt_port=args.mqtt_port,
                        prog=_prog())
    except OSError as exc:
        if exc.filename is not None:
            raise
        raise _listen_error(exc, "127.0.0.1", port, "--port") from exc


def cmd_init(args: argparse.Namespace) -> int:
    from tinyota_mqtt import starter

    path = Path(args.config)
    if path.exists() and not args.force:
        raise TinyOTAError(f"{path} exists already", "pass --force to overwrite it, or -c NEW_FILE")
    ask = sys.stdin.isatty() and not args.yes
    answers = starter.gather(args, ask)
    path.write_text(starter.render(answers))
    path.chmod(0o600)  # it holds the admin's and the device's passwords
    config = load_config(path)  # what it wrote must be a config the server takes
    print(f"wrote {path}: server {config.server.public_url}, broker {config.mqtt.url}, "
          f"device {answers.device} in group {answers.group} (image {answers.image}, {answers.platform})")
    print(f"the admin and {answers.device} passwords are in it (readable only by you): keep it out of git")
    print(f"next: `{_prog()} check-config -c {path}`, then `{_prog()} serve -c {path}`")
    return 0


def _print_json(value: Any) -> int:
    print(json.dumps(value, indent=2))
    return 0


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    for row in [headers, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


# -- argument parsing ----------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinyota", description=textwrap.fill(DESCRIPTION, 88),
                                     epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"tinyota {__version__}")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                        help="how much the server logs (default: info)")
    parser.add_argument("--debug", action="store_true",
                        help="log everything and show the traceback behind an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")

    def add(name: str, fn: Callable[[argparse.Namespace], int], help_text: str,
            config_help: str = "config file (default: config.yaml)") -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        p.add_argument("-c", "--config", default=DEFAULT_CONFIG, metavar="FILE", help=config_help)
        p.set_defaults(fn=fn)
        return p

    def server_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--server", metavar="URL",
                       help="the server to ask, e.g. http://tinyota.lan:8000 (default: the one the config "
                            "describes: server.host/port, then server.public_url)")

    p = add("demo", cmd_demo, "everything on this machine: server, embedded broker, simulated fleet, a release")
    p.add_argument("--port", type=int, help="HTTP port (default: server.port from the config)")
    p.add_argument("--mqtt-port", type=int, help="embedded broker port (default: mqtt.embedded_port)")
    p.add_argument("--once", action="store_true", help="exit when the demo update is confirmed")
    p.add_argument("--rollout", action="store_true",
                   help="a staged rollout instead: a failing canary halts it before the rest are told")

    p = add("init", cmd_init, "write a starter config for your own network",
            config_help="the file to write (default: config.yaml)")
    p.add_argument("--lan-address", metavar="ADDR",
                   help="this machine's address that devices reach (default: asked, or the detected one)")
    p.add_argument("--port", type=int, default=8000, help="HTTP port devices download from (default: 8000)")
    p.add_argument("--broker", metavar="URL",
                   help="your MQTT broker, e.g. mqtt://192.168.1.2:1883, or 'embedded' "
                        "(default: asked, or mqtt://127.0.0.1:1883)")
    p.add_argument("--device", metavar="ID", help="the first device's id (default: asked, or esp-1)")
    p.add_argument("--platform", choices=PLATFORMS, help="its chip (default: esp8266)")
    p.add_argument("--image", metavar="NAME", help="its firmware image's name (default: firmware)")
    p.add_argument("--group", metavar="NAME", help="its group's name (default: lab)")
    p.add_argument("--yes", action="store_true", help="ask nothing: take the defaults for what is not given")
    p.add_argument("--force", action="store_true", help="overwrite the file if it exists")

    p = add("serve", cmd_serve, "run the firmware server and the MQTT side")
    p.add_argument("--host", help="listen address (overrides server.host)")
    p.add_argument("--port", type=int, help="listen port (overrides server.port)")
    p.add_argument("--mqtt", metavar="URL",
                   help="broker URL (overrides mqtt.url); 'embedded' runs one inside, 'none' runs HTTP only")
    p.add_argument("--mqtt-port", type=int, help="the embedded broker's port (overrides mqtt.embedded_port)")

    p = add("check-config", cmd_check_config, "validate the config file and print ok or every problem")
    p.add_argument("--show", action="store_true", help="also print the config, secrets masked")

    p = add("release", cmd_release, "publish a firmware build as a new release of an image")
    p.add_argument("file", help="the firmware .bin (or .bin.gz for ESP8266)")
    p.add_argument("--image", required=True, help="which image (line of builds) it belongs to, from images:")
    p.add_argument("--version", required=True, dest="version",
                   help="its semantic version, e.g. 1.4.0; must match the version inside the image")
    p.add_argument("--notes", help="release notes, shown in Home Assistant and the dashboard")
    p.add_argument("--replace", action="store_true", help="overwrite an existing release of that version")
    p.add_argument("--force", action="store_true",
                   help="skip the image checks: chip, truncation/checksum and embedded version")
    p.add_argument("--server", metavar="URL",
                   help="upload to the server at this URL (default: the config's server if it answers, "
                        "else straight into the local store)")

    p = add("releases", cmd_releases, "list the releases, lowest version first")
    p.add_argument("--image", help="only this image's")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    server_option(p)

    p = add("status", cmd_status, "show every device: online, installed, target, update state, hold, last error")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    server_option(p)

    p = add("history", cmd_history, "show one device's update attempts, newest first")
    p.add_argument("device", help="the device id")
    p.add_argument("--limit", type=int, default=20, help="how many attempts (default: 20)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    server_option(p)

    p = add("install", cmd_install, "announce a release to devices or a group now")
    p.add_argument("devices", nargs="*", metavar="DEVICE", help="device ids (or --group)")
    p.add_argument("--group", help="every device of this group")
    p.add_argument("--version", dest="version",
                   help="default: the latest release (an older one rolls back and pins the device)")
    server_option(p)

    p = add("cancel", cmd_cancel, "withdraw pending announcements and hold the devices until the next install")
    p.add_argument("devices", nargs="*", metavar="DEVICE", help="device ids (or --group)")
    p.add_argument("--group", help="every device of this group")
    server_option(p)

    p = add("forget", cmd_forget, "drop devices the config does not name (state, history, retained reports)")
    p.add_argument("devices", nargs="*", metavar="DEVICE", help="device ids not in the config")
    p.add_argument("--unknown", action="store_true", help="every device the config does not name")
    server_option(p)

    p = add("simulate", cmd_simulate, "run simulated devices that speak the device contract")
    p.add_argument("--devices", type=int,
                   help="how many (default: every configured device, of --group, whose password is known)")
    p.add_argument("--group", help="simulate this group's devices (default: every configured device)")
    p.add_argument("--mqtt", metavar="URL", help="broker URL (default: from the config)")
    p.add_argument("--version", dest="version", default="1.0.0", help="version they start on (default: 1.0.0)")
    p.add_argument("--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    p.add_argument("--password-file", metavar="FILE",
                   help=f"ID=PASSWORD lines for devices whose config entry is hashed (or set {PASSWORDS_ENV})")
    p.add_argument("--password", action="append", metavar="ID=PASSWORD",
                   help="the same on the command line (repeatable); visible in `ps`, so prefer the file")
    p.add_argument("--fail", metavar="ID[,ID]", help="these devices fail every update (after the download)")
    p.add_argument("--fail-rate", dest="fail_rate", type=float, default=0.0, metavar="SHARE",
                   help="this share of the devices (0..1, stable by id) fail every update too")
    p.add_argument("--rate", type=_positive_rate, metavar="BYTES_PER_S",
                   help="download at most this fast, like a device on weak Wi-Fi (default: as fast as it can)")

    p = add("esphome-snippet", cmd_esphome_snippet,
            "print the ESPHome YAML (a package) that makes an ESPHome device follow its TinyOTA updates")
    p.add_argument("device", help="the device id, as in the config's devices:")
    p.add_argument("-o", "--output", metavar="FILE", help="write it to FILE instead of stdout")

    p = add("hash-password", cmd_hash_password,
            "print a PBKDF2 hash to put in the config instead of a password",
            config_help="accepted like every command's; the hash needs no config")
    p.add_argument("password", nargs="?", help=argparse.SUPPRESS)  # refused: it would show in `ps`
    p.add_argument("--password-file", metavar="FILE",
                   help="read the password from the file's first line ('-': stdin); "
                        "default: asked at the terminal, or read from stdin")

    p = add("keygen", cmd_keygen, "make an ECDSA P-256 key for signing announcements (server.signing_key)",
            config_help="accepted like every command's; the key needs no config")
    p.add_argument("file", help="where to write the private key (PEM)")

    from tinyota_mqtt import cli_rollout
    cli_rollout.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging("debug" if args.debug else args.log_level)
    try:
        code = int(args.fn(args))
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at exit
        return code
    except BrokenPipeError:
        # The reader stopped (`tinyota status --json | head`): fine. Point stdout at /dev/null so
        # the interpreter's last flush at exit does not complain about the pipe either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except TinyOTAError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if args.debug:
            traceback.print_exc()
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        if exc.errno in (errno.EACCES, errno.EPERM):
            print("  hint: run as a user who may use that file, or change its permissions", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(f"error: unexpected {type(exc).__name__}: {exc}\n  hint: run it again with --debug for the "
              "traceback, and report it", file=sys.stderr)
        return 1
