"""Announcements a device must refuse: a URL off its server, a missing, changed or replayed signature.

The Python simulator against a real mosquitto and an attacker's HTTP server; the URL rules
themselves (core/trust.py, the twin of esp_client's server_url.h) are in test_trust_rules.py.
The same attacks on real ``tinyota-device`` processes are section 9 of tests/test_esp_e2e.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Mosquitto, wait_until, write_config
from tests.test_esp_e2e import DEVICE_TIMEOUT, Trap, forged, status_of
from tinyota_mqtt.core import trust
from tinyota_mqtt.core.protocol import Announcement
from tinyota_mqtt.mqtt.simulator import SimDevice, SimSettings


@pytest.fixture
def trap() -> Iterator[Trap]:
    made = Trap()
    yield made
    made.close()


def test_forged_announcement_to_a_foreign_host_gets_nothing_from_the_simulator(
        tmp_path: Path, broker: Mosquitto, prefix: str, probes: Any, trap: Trap) -> None:
    from tinyota_mqtt.config import load_config
    from tinyota_mqtt.mqtt.simulator import devices_for

    config = load_config(write_config(tmp_path, mqtt=broker.url, prefix=prefix))
    [sim] = devices_for(config, None, "kitchen-lights", broker.url, "1.0.0")[:1]
    assert sim.s.server_url == config.server.public_url  # taken from the config, not trusted blindly
    probe = probes(broker.url).subscribe(f"{prefix}/{sim.s.device_id}/status")
    sim.start()
    try:
        wait_until(lambda: probe.last(f"{prefix}/{sim.s.device_id}/status") is not None, DEVICE_TIMEOUT,
                   "the simulator's first status")
        probes(broker.url).publish(f"{prefix}/{sim.s.device_id}/update", forged(trap.url()), retain=True)
        body = status_of(probe, f"{prefix}/{sim.s.device_id}/status", "forged-1")
        assert body == {**body, "state": "failed", "version": "1.0.0", "error": trust.NOT_OUR_SERVER}, body
        assert sim.version == "1.0.0" and sim.updates == 0
        assert not trap.connected.is_set() and trap.received == []
    finally:
        sim.stop()


def test_simulator_verifies_signatures_when_given_the_key(tmp_path: Path, broker: Mosquitto, prefix: str,
                                                          probes: Any) -> None:
    from tinyota_mqtt.signing import generate

    signer = generate(tmp_path / "k")
    sim = SimDevice(SimSettings(device_id="kitchen-2", password="pw", broker=broker.url, prefix=prefix,
                                server_url="http://127.0.0.1:9", public_key=signer.public_key))
    status = probes(broker.url).subscribe(f"{prefix}/kitchen-2/status")
    sim.start()
    try:
        status.wait_for(f"{prefix}/kitchen-2/status", timeout=DEVICE_TIMEOUT)
        ann = Announcement(id="a1", version="2.0.0", url="http://127.0.0.1:9/fw/kitchen/2.0.0.bin", size=10,
                           md5="0" * 32, sha256="0" * 64, image="kitchen", device="kitchen-1")
        for_kitchen1 = dataclasses.replace(ann, sig=signer.sign(ann.manifest()))
        probes(broker.url).publish(f"{prefix}/kitchen-2/update", for_kitchen1.payload(), retain=True)
        body = status_of(status, f"{prefix}/kitchen-2/status", "a1")
        assert body["state"] == "failed" and body["error"] == trust.BAD_SIGNATURE, body
        unsigned = dataclasses.replace(ann, id="a2", device="kitchen-2").payload()
        probes(broker.url).publish(f"{prefix}/kitchen-2/update", unsigned, retain=True)
        body = status_of(status, f"{prefix}/kitchen-2/status", "a2")
        assert body["error"] == trust.MISSING_SIGNATURE, body
        assert sim.updates == 0 and sim.version == "1.0.0"
    finally:
        sim.stop()
