"""4. Status ingestion: N devices each publish M progress reports as fast as they can.

Progress reports come during an update, so a release is announced to the whole group first and
every device knows its announcement ``id`` (it subscribes, as esp_client does) and quotes it.

How we see what the server processed without adding anything to it: while an update is in
progress, a device's Home Assistant state (``<prefix>/<id>/state``) carries the progress of the
last report the server handled. tinyota publishes it once per device and turn of its event loop,
not once per report (a burst of 20 reports from one device may make one state), so the observer
reads which report each state reflects: the progress values are distinct per report (report k of
M says k·100/M), a device's reports reach the server in order, so a state that shows report k
says reports 1..k are in. Processed = the sum over devices of the latest report reflected.

- rate: reports processed ÷ time from the first report sent to the state showing the last one;
- backlog at stop: reports sent but not yet reflected when the last device finished sending;
- lost: reports never reflected (a broker drops QoS 0 messages for a client that reads too
  slowly once its queue is full). A report lost in the middle of a device's burst would hide
  behind the next one; the registry check below and the end state catch a lost last report;
- registry: after the write-behind flush, the SQLite file holds every device's last progress.

The broker floor: the same burst on topics tinyota does not subscribe to, counted message by
message by an observer subscribed to them directly: the broker plus our own clients, no server.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from typing import Any

from bench.lab import Lab, running
from bench.mqttlite import MqttLite, close_all, connect_many
from bench.peers import Tinyota, fleet
from bench.settings import Settings
from bench.util import MiB, PeakRss


def status(progress: int | None, state: str = "downloading", announce_id: str | None = None) -> bytes:
    body = {"state": state, "version": "1.0.0", "progress": progress, "id": announce_id, "platform": "esp8266",
            "free_space": 1044480}
    return json.dumps({k: v for k, v in body.items() if v is not None}, separators=(",", ":")).encode()


class Counter:
    """Counts live (not retained) messages; ``reached(n)`` fires once the count gets to n."""

    def __init__(self) -> None:
        self.count = 0
        self.last = 0.0
        self._goal: tuple[int, asyncio.Event] | None = None

    def __call__(self, _topic: str, _payload: bytes, retained: bool, when: float) -> None:
        if retained:
            return
        self.count += 1
        self.last = when
        self._check_goal()

    def _check_goal(self) -> None:
        if self._goal is not None and self.count >= self._goal[0]:
            self._goal[1].set()

    def reset(self) -> None:
        self.count = 0

    async def reached(self, n: int, timeout: float) -> bool:
        event = asyncio.Event()
        self._goal = (n, event)
        if self.count >= n:
            return True
        try:
            await asyncio.wait_for(event.wait(), timeout)
            return True
        except TimeoutError:
            return False


class Reflected(Counter):
    """Follows each device's Home Assistant state: which of its reports the server has handled.

    ``count`` is the sum over devices of the latest report a live state reflects; ``reached(n)``
    fires once it gets to n. ``devices_with(pred)`` counts devices whose last state matches.
    """

    def __init__(self, messages: int) -> None:
        super().__init__()
        self.report_of = {k * 100 // messages: k for k in range(1, messages + 1)}  # progress → report
        self.latest: dict[str, int] = {}
        self.last_state: dict[str, dict[str, Any]] = {}

    def __call__(self, topic: str, payload: bytes, retained: bool, when: float) -> None:
        if retained or not payload:
            return
        device = topic.split("/")[1]
        state = json.loads(payload)
        self.last_state[device] = state
        report = self.report_of.get(state.get("update_percentage")) if state.get("in_progress") else None
        if report is not None and report > self.latest.get(device, 0):
            self.count += report - self.latest.get(device, 0)
            self.latest[device] = report
            self.last = when
        self._check_goal()

    def reset(self) -> None:
        super().reset()
        self.latest.clear()

    def devices_with(self, predicate: Callable[[dict[str, Any]], bool]) -> int:
        return sum(1 for state in self.last_state.values() if predicate(state))


async def burst(devices: list[MqttLite], topic: Callable[[str], str], messages: int, ids: dict[str, str],
                counter: Counter | Reflected, timeout: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    total = len(devices) * messages
    counter.reset()

    async def send(client: MqttLite) -> None:
        for k in range(1, messages + 1):
            client.publish(topic(client.client_id), status(k * 100 // messages, announce_id=ids.get(client.client_id)),
                           retain=True)
        await client.drain()

    t0 = loop.time()
    await asyncio.gather(*(send(c) for c in devices))
    sent = loop.time()
    at_stop = counter.count
    await counter.reached(total, timeout)
    processed = counter.count
    done = counter.last if processed else sent
    return {"messages": total, "send_s": sent - t0, "processed": processed, "lost": total - processed,
            "backlog_at_stop": total - at_stop, "drain_s": max(0.0, done - sent),
            "rate_msg_s": processed / (done - t0) if done > t0 else None}


def registry_complete(tiny: Tinyota, ids: list[str]) -> int:
    """Devices whose final progress (100) is in the SQLite file: read-only, WAL lets us."""
    db = sqlite3.connect(f"file:{tiny.dir / 'state.sqlite'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT device FROM attempts WHERE progress = 100").fetchall()
    finally:
        db.close()
    return len({r[0] for r in rows} & set(ids))


async def run(lab: Lab, s: Settings) -> dict[str, Any]:
    devices = fleet(s.ingest_devices)
    ids = [d.id for d in devices]
    tiny = lab.tinyota(devices, prefix="ing", auto_update=True)
    prefix, floor_prefix = tiny.prefix, f"floor-{tiny.prefix}"  # the floor uses topics tinyota ignores
    tiny.add_release("2.0.0", 64 * 1024)  # announced to every device as the server starts
    port = lab.mosquitto.port
    states, floor_counter = Reflected(s.ingest_messages), Counter()
    announced: dict[str, str] = {}

    def on_announcement(topic: str, payload: bytes, _retained: bool, _when: float) -> None:
        if payload:
            announced[topic.split("/")[1]] = json.loads(payload)["id"]

    timeout = max(30.0, len(ids) * s.ingest_messages / 500)  # generous: even 500 msg/s finishes
    loop = asyncio.get_running_loop()
    with running(tiny):
        tiny.wait_mqtt()
        observer = await MqttLite("bench-state-observer", states).connect("127.0.0.1", port)
        await observer.subscribe([(f"{prefix}/+/state", 0)])
        floor_observer = await MqttLite("bench-floor-observer", floor_counter).connect("127.0.0.1", port)
        await floor_observer.subscribe([(f"{floor_prefix}/+/status", 0)])
        clients = await connect_many("127.0.0.1", port, ids, on_message=on_announcement)
        try:
            for start in range(0, len(clients), 100):
                await asyncio.gather(*(c.subscribe([(f"{prefix}/{c.client_id}/update", 1)])
                                       for c in clients[start:start + 100]))
            # Devices say "idle" on boot first; wait until the server knows every one of them.
            for c in clients:
                c.publish(f"{prefix}/{c.client_id}/status", status(None, "idle"), retain=True)
            deadline = loop.time() + timeout
            while (known := states.devices_with(lambda st: st.get("installed_version") == "1.0.0")) < len(ids) \
                    or len(announced) < len(ids):
                if loop.time() > deadline:
                    raise RuntimeError(f"tinyota handled {known} of {len(ids)} boot statuses; "
                                       f"{len(announced)} devices hold an announcement")
                await asyncio.sleep(0.05)
            floor = await burst(clients, lambda d: f"{floor_prefix}/{d}/status", s.ingest_messages, announced,
                                floor_counter, timeout)
            async with PeakRss(tiny.pid) as rss:
                result = await burst(clients, lambda d: f"{prefix}/{d}/status", s.ingest_messages, announced,
                                     states, timeout)
            await asyncio.sleep(1.5)  # the registry writes behind, about every half second
            stored = registry_complete(tiny, ids)
        finally:
            await close_all([*clients, observer, floor_observer])
    print(f"  ingestion {len(ids)}×{s.ingest_messages}: {result['rate_msg_s'] or 0:.0f} msg/s, "
          f"backlog at stop {result['backlog_at_stop']}, lost {result['lost']}; "
          f"broker floor {floor['rate_msg_s'] or 0:.0f} msg/s", flush=True)
    return {"devices": len(ids), "messages_each": s.ingest_messages, **result, "peak_rss_mb": rss.peak / MiB,
            "registry_complete": stored, "floor": floor,
            "vs_floor": (result["rate_msg_s"] or 0) / floor["rate_msg_s"] if floor["rate_msg_s"] else None}
