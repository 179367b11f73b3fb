"""What the broker holds, against a real mosquitto: the retained state after a restart, and
retained messages someone else wrote on topics the server owns."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Mosquitto, ServerThread, release, wait_until, write_config
from tinyota_mqtt.fleet.guard import SETTLE_SECONDS


def start(servers: Any, path: Path) -> ServerThread:
    server: ServerThread = servers(path)
    wait_until(lambda: server.service.ready, 15, "the server to connect and take the retained state")
    return server


def test_a_restart_takes_the_retained_reports_before_it_judges_deadlines(
        tmp_path: Path, broker: Mosquitto, prefix: str, servers: Any, probes: Any) -> None:
    path = write_config(tmp_path, mqtt=broker.url, prefix=prefix, timeout="2s")
    server = start(servers, path)
    release(server.config, "sensor", "2.0.0")
    (attempt,) = server.call(server.service.install, ["sensor-1"])
    server.stop()
    # While the server is down the device updates, says so (retained), and the deadline passes.
    probes(broker.url).publish(f"{prefix}/sensor-1/status",
                               json.dumps({"state": "idle", "version": "2.0.0"}), retain=True)
    wait_until(lambda: time.time() > attempt.deadline + 1, 10, "the attempt's deadline to pass")
    again = start(servers, path)
    after = again.call(again.service.registry.attempt, attempt.id)
    assert after.state == "succeeded" and not after.late, after


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_foreign_retained_messages_on_our_topics_are_put_back(
        tmp_path: Path, broker: Mosquitto, prefix: str, servers: Any, probes: Any, caplog: Any,
        protocol: str) -> None:
    # With MQTT 5 the guard subscribes with no_local: the broker keeps our own publishes to
    # itself, and must still send what anyone else writes.
    path = write_config(tmp_path, mqtt=broker.url, prefix=prefix)
    path.write_text(path.read_text().replace("  prefix:", f'  protocol: "{protocol}"\n  prefix:'))
    server = start(servers, path)
    release(server.config, "kitchen", "1.0.0")
    server.call(server.service.tick)
    watcher = probes(broker.url)
    watcher.subscribe(f"{prefix}/#")
    ours = watcher.wait_for(f"{prefix}/kitchen-1/update", lambda m: bool(m.payload)).payload
    state = watcher.wait_for(f"{prefix}/kitchen-1/state").payload
    attacker = probes(broker.url)
    forged = json.dumps({"id": "evil", "version": "6.6.6", "url": "http://evil.example/fw.bin",
                         "size": 1, "md5": "0" * 32, "sha256": "0" * 64}).encode()
    with caplog.at_level(logging.WARNING, "tinyota.service"):
        attacker.publish(f"{prefix}/kitchen-1/update", forged, retain=True)
        attacker.publish(f"{prefix}/sensor-1/update", forged, retain=True)  # nothing announced there
        attacker.publish(f"{prefix}/kitchen-1/state", b'{"installed_version":"6.6.6"}', retain=True)
        attacker.publish(f"{prefix}/server/availability", b"offline", retain=True)

        def broker_holds(topic: str) -> bytes | None:
            fresh = probes(broker.url)
            fresh.subscribe(topic)
            msg = fresh.wait_for(topic, timeout=5) if topic != f"{prefix}/sensor-1/update" else None
            fresh.close()
            return msg.payload if msg else None

        def last(topic: str) -> bytes | None:  # None until the watcher has seen anything there
            msg = watcher.last(f"{prefix}/{topic}")
            return msg.payload if msg is not None else None

        # Each forgery reaches the watcher first, then the server's repair does.
        for topic, bad in (("kitchen-1/update", forged), ("sensor-1/update", forged),
                           ("kitchen-1/state", b'{"installed_version":"6.6.6"}'), ("server/availability", b"offline")):
            watcher.wait_for(f"{prefix}/{topic}", lambda m, bad=bad: m.payload == bad)
        wait_until(lambda: last("kitchen-1/update") == ours, 10, "the server to put its announcement back")
        wait_until(lambda: last("sensor-1/update") == b"", 10, "the server to clear the forged one")
        wait_until(lambda: last("kitchen-1/state") == state, 10, "its state back")
        wait_until(lambda: last("server/availability") == b"online", 10, "'online' back")
    assert broker_holds(f"{prefix}/kitchen-1/update") == ours  # what a device connecting now gets
    assert broker_holds(f"{prefix}/server/availability") == b"online"
    warned = [r.getMessage() for r in caplog.records if "did not write" in r.getMessage()]
    assert len(warned) == 4 and all(prefix in w for w in warned), warned
    # Our own publishes come back to us too; they are never taken for forgeries. (A negative:
    # give the guard two of its settle periods, with the half-second ticker running meanwhile.)
    release(server.config, "sensor", "2.0.0")
    server.call(server.service.install, ["sensor-1"])
    watcher.wait_for(f"{prefix}/sensor-1/update", lambda m: b"2.0.0" in m.payload)
    settled = time.monotonic() + 2 * SETTLE_SECONDS
    wait_until(lambda: time.monotonic() > settled, 5, "the guard's settle time to pass")
    assert len([r for r in caplog.records if "did not write" in r.getMessage()]) == 4
