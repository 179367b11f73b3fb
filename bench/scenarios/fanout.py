"""3. Announcement fan-out: a release for a group of N devices, until the last one holds its message.

Each device is a lightweight MQTT connection subscribed to its own ``<prefix>/<id>/update`` at
QoS 1, as esp_client does. The clock starts when the operator's release begins (the upload to
``POST /api/releases``, which announces to auto-update groups before it answers) and stops when
the last device has received its announcement. Run for each fleet size in ``fanout_ns`` (1,000
and 5,000), each with a server of its own whose config names that many devices.

The broker floor: the bench itself publishes the same number of retained QoS 1 messages of the
same size, one per device, from one connection. That is what the broker and these clients cost
with no server logic at all; tinyota's time is reported next to it and as a multiple of it.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from typing import Any

from bench.lab import Lab, running
from bench.mqttlite import MqttLite, close_all, connect_many
from bench.peers import fleet
from bench.settings import Settings
from bench.util import MiB, PeakRss, median, percentile


async def run(lab: Lab, s: Settings) -> dict[str, Any]:
    sizes = [await one_size(lab, s, n) for n in s.fanout_ns]
    # The first size's figures at the top level, where the targets table reads them.
    return {**sizes[0], "sizes": sizes}


async def one_size(lab: Lab, s: Settings, count: int) -> dict[str, Any]:
    devices = fleet(count)
    ids = [d.id for d in devices]
    tiny = lab.tinyota(devices, prefix="fan", auto_update=True)
    floor_prefix = f"floor-{tiny.prefix}"  # topics tinyota does not use
    loop = asyncio.get_running_loop()
    held: dict[str, dict[str, float]] = defaultdict(dict)  # version -> device -> when it arrived
    complete: dict[str, asyncio.Event] = defaultdict(asyncio.Event)

    def on_message(topic: str, payload: bytes, _retained: bool, when: float) -> None:
        if not payload:
            return
        version = json.loads(payload)["version"]
        got = held[version]
        got.setdefault(topic.split("/")[1], when)
        if len(got) == len(ids):
            complete[version].set()

    reps: list[dict[str, Any]] = []
    with running(tiny):
        tiny.wait_mqtt()
        clients = await connect_many("127.0.0.1", lab.mosquitto.port, ids, on_message=on_message)
        publisher = await MqttLite("bench-floor-publisher").connect("127.0.0.1", lab.mosquitto.port)
        try:
            for start in range(0, len(ids), 100):
                await asyncio.gather(*(c.subscribe([(f"{tiny.prefix}/{c.client_id}/update", 1),
                                                    (f"{floor_prefix}/{c.client_id}/update", 1)])
                                       for c in clients[start:start + 100]))
            sample = None
            for rep in range(s.fanout_repeats):
                # tinyota: release through the API, clock from the start of the upload
                version = f"2.0.{rep}"
                async with PeakRss(tiny.pid) as rss:
                    t0 = loop.time()
                    await asyncio.to_thread(tiny.upload_release, version, s.fanout_image)
                    posted = loop.time() - t0
                    await asyncio.wait_for(complete[version].wait(), 60 + count / 50)
                arrivals = [t - t0 for t in held[version].values()]
                sample = sample or _announcement_like(version)
                # the floor: the same count of retained QoS 1 messages straight from one publisher
                floor_version = f"floor-{rep}"
                t1 = loop.time()
                payload = sample.replace(b"FLOOR", floor_version.encode())
                acks = [publisher.publish(f"{floor_prefix}/{device_id}/update", payload, qos=1, retain=True)
                        for device_id in ids]
                await asyncio.wait_for(complete[floor_version].wait(), 60 + count / 50)
                await asyncio.wait_for(asyncio.gather(*(a for a in acks if a is not None)), 60 + count / 50)
                floor = max(held[floor_version].values()) - t1
                reps.append({"fanout_s": max(arrivals), "p50_s": percentile(arrivals, 50), "post_s": posted,
                             "floor_s": floor, "peak_rss_mb": rss.peak / MiB})
                print(f"  fan-out to {len(ids)}: last device after {max(arrivals):.3f}s "
                      f"(release request {posted:.3f}s), broker floor {floor:.3f}s", flush=True)
        finally:
            await close_all([*clients, publisher])
    fanout_s = median([r["fanout_s"] for r in reps])
    floor_s = median([r["floor_s"] for r in reps])
    return {"devices": len(ids), "reps": reps, "fanout_s": fanout_s, "floor_s": floor_s,
            "vs_floor": fanout_s / floor_s if fanout_s and floor_s else None,
            "post_s": median([r["post_s"] for r in reps]), "peak_rss_mb": max(r["peak_rss_mb"] for r in reps)}


def _announcement_like(version: str) -> bytes:
    """A payload of the size tinyota announces (id, version, URL, size, md5, sha256)."""
    body = {"id": "0123456789ab", "version": "FLOOR", "url": f"http://127.0.0.1:8000/fw/fleet/{version}.bin",
            "size": 65536, "md5": "0" * 32, "sha256": "0" * 64}
    return json.dumps(body, separators=(",", ":")).encode()
