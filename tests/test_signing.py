"""Signed announcements: a device holding the public key can tell the server's from a forgery."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from tests.conftest import Mosquitto, release, tinyota, write_config
from tests.test_http import request
from tinyota_mqtt.core.protocol import Announcement
from tinyota_mqtt.signing import verify


def test_keygen_then_signed_announcements(tmp_path: Path, broker: Mosquitto, prefix: str, servers: Any,
                                          probes: Any) -> None:
    key = tmp_path / "signing.key"
    out = tinyota("keygen", str(key))
    assert out.returncode == 0, out.stderr
    public = out.stdout.split("for devices: ")[1].strip()
    assert key.stat().st_mode & 0o777 == 0o600
    again = tinyota("keygen", str(key))
    assert again.returncode == 2 and "not overwriting" in again.stderr

    text = write_config(tmp_path, mqtt=broker.url, prefix=prefix).read_text()
    (tmp_path / "config.yaml").write_text(text.replace("  admin:", f"  signing_key: {key}\n  admin:"))
    server = servers(tmp_path / "config.yaml")
    resp, body = request(server, "GET", "/healthz", user=None)
    assert json.loads(body)["signing_public_key"] == public
    release(server.config, "kitchen", "1.0.0")
    server.call(server.service.tick)
    msg = probes(broker.url).subscribe(f"{prefix}/kitchen-1/update").wait_for(f"{prefix}/kitchen-1/update")
    body = json.loads(msg.payload)
    ann = Announcement(**body)
    assert verify(public, ann.manifest(), body["sig"])
    forged = dataclasses.replace(ann, url="http://evil.example/fw.bin")
    assert not verify(public, forged.manifest(), body["sig"])
    assert len(msg.payload) < 512  # still fits the device's MQTT buffer


def test_unsigned_by_default(tmp_path: Path) -> None:
    ann = Announcement("a", "1.0.0", "http://h/fw/k/1.0.0.bin", 1, "0" * 32, "0" * 64)
    assert b"sig" not in ann.payload()
