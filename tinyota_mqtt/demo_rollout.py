"""``tinyota demo --rollout``: a staged rollout halting on a failing canary, in one process.

Like the main demo (embedded broker, simulated devices, its own store and state under
``var/demo``), but on a fleet of its own: eight lamps in a group whose ``rollout:`` policy puts
lamp-1 first, then half, then the rest, halting once a fifth of the ended attempts failed.
lamp-1 fails on purpose (as ``tinyota simulate --fail lamp-1`` would); the demo shows the rollout
halting with its reason while the other seven lamps are never told anything.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from pathlib import Path
from types import MappingProxyType

from tinyota_mqtt.config import load_config
from tinyota_mqtt.config.model import Config, Device, Group, Image
from tinyota_mqtt.core import image as esp_image
from tinyota_mqtt.core import rollout as ro
from tinyota_mqtt.core.passwords import Password
from tinyota_mqtt.demo import START, _demo_config, _wait
from tinyota_mqtt.mqtt.simulator import devices_for
from tinyota_mqtt.runner import Server

NEXT = "1.1.0"
LAMPS = [f"lamp-{i}" for i in range(1, 9)]
CANARY = "lamp-1"
POLICY = "waves [lamp-1], 50%, rest; halt at 20%"


def _lamp_config(config: Config) -> Config:
    policy = ro.Policy(waves=(ro.WaveSpec(devices=(CANARY,)), ro.WaveSpec(percent=50), ro.REST), halt_at=20)
    image = Image("lamp", "esp8266", "Demo lamp")
    group = Group("lamps", "lamp", auto_update=True, attempt_timeout=60, rollout=policy)
    devices = {d: Device(d, "lamps", Password.parse(f"{d}-demo")) for d in LAMPS}
    # Home Assistant would see eight demo lamps appear: keep them out of it.
    return dataclasses.replace(config, images=MappingProxyType({"lamp": image}),
                               groups=MappingProxyType({"lamps": group}), devices=MappingProxyType(devices),
                               homeassistant=dataclasses.replace(config.homeassistant, enabled=False))


def run_rollout_demo(config_path: Path, *, port: int, mqtt_port: int | None = None) -> int:
    base = load_config(config_path)
    root = (config_path.parent / "var" / "demo").resolve()
    shutil.rmtree(root, ignore_errors=True)
    config = _lamp_config(_demo_config(base, root, port, mqtt_port))
    return asyncio.run(_demo(config))


async def _demo(config: Config) -> int:
    server = Server(config)
    service = server.service
    with service.store.begin("lamp", START, "first release") as up:
        up.write(esp_image.make_test_image(START, 64 * 1024))
        up.commit()
    await server.start()
    print(f"server on http://127.0.0.1:{server.port}, embedded broker on {server.mqtt_url}", flush=True)
    sims = devices_for(config, None, None, server.mqtt_url or "", START, fail={CANARY})
    loop = asyncio.get_running_loop()
    for sim in sims:
        sim.start()
    print(f"{len(sims)} simulated lamps on {START}; {CANARY} has a bad board and will fail its update", flush=True)
    registry = service.registry
    await _wait(lambda: all(registry.device(d).version == START for d in LAMPS), 15)
    print(f"group lamps has a rollout policy: {POLICY}", flush=True)
    with service.store.begin("lamp", NEXT, "demo release") as up:
        up.write(esp_image.make_test_image(NEXT, 128 * 1024))
        up.commit()
    print(f"released lamp {NEXT}", flush=True)
    service.tick()  # the new release starts the group's rollout now rather than at the next tick

    def rollout() -> ro.Rollout | None:
        found = registry.rollouts()
        return found[-1] if found else None

    halted = await _wait(lambda: (r := rollout()) is not None and r.state in (ro.HALTED, ro.COMPLETED), 60)
    r = rollout()
    ok = False
    if r is not None:
        summary = ro.summary(r)
        print(f"\nrollout {r.id}: {r.state}, wave {summary['wave']} of {r.waves}", flush=True)
        if r.reason:
            print(f"  reason: {r.reason}", flush=True)
        for wave in summary["waves"]:
            print(f"  wave {wave['wave']}: {wave['devices']} lamp(s): {wave['succeeded']} succeeded, "
                  f"{wave['failed']} failed, {wave['waiting']} never told", flush=True)
        untouched = [d for d in LAMPS if d != CANARY and not registry.history(d)]
        print(f"  lamps never told about {NEXT}: {', '.join(untouched)}", flush=True)
        ok = halted and r.state == ro.HALTED and len(untouched) == len(LAMPS) - 1
    print("\nthe rollout halted on the canary; the rest of the fleet was not touched" if ok
          else "\nthe rollout did not halt as expected", flush=True)
    print("in real life: fix the build and release again, or `tinyota rollout resume ID` (docs/rollouts.md)",
          flush=True)
    for sim in sims:
        await loop.run_in_executor(None, sim.stop)
    await server.stop()
    return 0 if ok else 1
