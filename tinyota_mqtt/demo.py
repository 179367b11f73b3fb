"""``tinyota demo``: the whole loop in one process, on the sample config, with nothing installed.

It starts the server with the embedded broker, brings up a simulated device for every configured
device it has a password for, releases a new version of each image, and shows the fleet update
and confirm itself. The demo keeps its store and state under ``var/demo`` so it never touches the
real ones, and starts fresh each time.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import signal
import time
from pathlib import Path

from tinyota_mqtt.apiclient import candidates
from tinyota_mqtt.config import load_config
from tinyota_mqtt.config.model import Config
from tinyota_mqtt.core import image as esp_image
from tinyota_mqtt.core.attempts import FINAL
from tinyota_mqtt.mqtt.simulator import SimDevice, devices_for
from tinyota_mqtt.runner import Server

START, NEXT = "1.0.0", "1.1.0"


def _demo_config(config: Config, root: Path, port: int, mqtt_port: int | None) -> Config:
    server = dataclasses.replace(config.server, store=root / "firmware", state=root / "tinyota.sqlite",
                                 host="127.0.0.1", port=port, public_url=f"http://127.0.0.1:{port}")
    mqtt = dataclasses.replace(config.mqtt, url="embedded",
                               embedded_port=mqtt_port if mqtt_port is not None else config.mqtt.embedded_port)
    return dataclasses.replace(config, server=server, mqtt=mqtt)


async def _wait(predicate: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.1)
    return False


def run_demo(config_path: Path, *, port: int | None, keep_running: bool, mqtt_port: int | None = None,
             prog: str = "tinyota") -> int:
    base = load_config(config_path)
    root = (config_path.parent / "var" / "demo").resolve()
    shutil.rmtree(root, ignore_errors=True)
    config = _demo_config(base, root, base.server.port if port is None else port, mqtt_port)
    # The CLI finds a server where the config says it listens; say so only when that is this one.
    talk = f"{prog} status -c {config_path}"
    if config.server.public_url not in candidates(base):
        talk += f" --server {config.server.public_url}"
    return asyncio.run(_demo(config, keep_running, talk))


async def _demo(config: Config, keep_running: bool, talk: str) -> int:
    server = Server(config)
    store = server.service.store
    for name in config.images:  # every device starts on 1.0.0, already released
        platform = config.images[name].platform
        with store.begin(name, START, "first release", platform=platform) as up:
            up.write(esp_image.make_test_image(START, 64 * 1024, platform=platform))
            up.commit()
    try:
        await server.start()
    except BaseException:
        with contextlib.suppress(Exception):  # the first error is the one to tell
            await server.stop()  # the broker may be up while the HTTP port was taken
        raise
    public = f"http://127.0.0.1:{server.port}"
    # Never print the password itself: it may be a real one from the environment.
    print(f"server on {public} (log in as {config.server.admin.username} with server.admin.password), "
          f"embedded broker on {server.mqtt_url}", flush=True)
    # The sample config stores one device's password hashed; its comment gives the password, which
    # follows the sample's "<id>-demo" pattern. Only a hash that matches it is played.
    known = {d.id: f"{d.id}-demo" for d in config.devices.values()
             if d.password is not None and d.password.hashed and d.password.matches(f"{d.id}-demo")}
    sims: list[SimDevice] = devices_for(config, None, None, server.mqtt_url or "", START,
                                        passwords=known, rate=256 * 1024)
    skipped = sorted(set(config.devices) - {s.s.device_id for s in sims})
    loop = asyncio.get_running_loop()
    for sim in sims:
        sim.start()
    print(f"{len(sims)} simulated devices: {', '.join(s.s.device_id for s in sims)}"
          + (f" (not simulated, hashed password: {', '.join(skipped)})" if skipped else ""), flush=True)
    registry = server.service.registry
    ids = [s.s.device_id for s in sims]
    await _wait(lambda: all(registry.device(d).version == START for d in ids), 15)

    started = []
    for name in config.images:
        platform = config.images[name].platform
        with store.begin(name, NEXT, "demo release: faster boot, fewer Wi-Fi drops", platform=platform) as up:
            up.write(esp_image.make_test_image(NEXT, 256 * 1024, platform=platform))
            up.commit()
        print(f"released {name} {NEXT}", flush=True)
    started += server.service.reconcile()  # automatic groups
    for group in config.groups.values():
        if not group.auto_update:
            print(f"group {group.name} updates on command: installing {NEXT} on it", flush=True)
            started += server.service.install_group(group.name, NEXT)
    attempt_ids = {a.id for a in started}

    def finished() -> bool:
        states = [registry.attempt(a) for a in attempt_ids]
        return all(s is not None and (s.state in FINAL or s.device not in ids) for s in states)

    shown: dict[str, str] = {}

    async def show_progress() -> None:
        while True:
            for device in ids:
                view = server.service.device_view(device)
                attempt = view["attempt"] or {}
                line = f"{attempt.get('state', '-')}" + (f" {view['progress']}%" if view["progress"] else "")
                if shown.get(device) != line:
                    shown[device] = line
                    print(f"  {device:<12} {view['installed'] or '?':<8} -> {NEXT}: {line}", flush=True)
            await asyncio.sleep(0.2)

    progress = asyncio.create_task(show_progress())
    ok = await _wait(finished, 60)
    progress.cancel()
    print("\nDEVICE        INSTALLED  OUTCOME", flush=True)
    for device in config.devices:
        view = server.service.device_view(device)
        attempt = view["attempt"]
        print(f"{device:<13} {view['installed'] or '?':<10} {attempt['state'] if attempt else '-'}"
              + (f" ({attempt['error']})" if attempt and attempt["error"] else ""), flush=True)
    succeeded = all((registry.attempt(a).state == "succeeded")  # type: ignore[union-attr]
                    for a in attempt_ids if registry.attempt(a).device in ids)  # type: ignore[union-attr]
    print("\nevery simulated device confirmed its update" if ok and succeeded else
          "\nsome updates did not complete", flush=True)
    if not keep_running:
        print(f"the CLI is {talk.split()[0]}: `{talk.split()[0]} --help` lists its commands; without --once the "
              "demo keeps serving so you can try them", flush=True)
    if keep_running:
        print(f"still serving. Open {public}/ (the dashboard; admin and its password from the config), "
              f"or try the curl checks in the README, e.g. curl -I -u kitchen-1:kitchen-1-demo "
              f"{public}/firmware.bin . Ctrl-C stops.", flush=True)
        print(f"from another terminal: {talk} (and history, releases, install, cancel the same way)",
              flush=True)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
    for sim in sims:
        await loop.run_in_executor(None, sim.stop)
    await server.stop()
    return 0 if ok and succeeded else 1
