"""Signed announcements: a device holding the public key can tell the server's from a forgery.

The devices' side of this (esp_client verifying with BearSSL/mbedTLS, the simulator) is in
tests/test_device_trust.py and tests/test_esp_e2e.py; here: the key, the server's signatures and
the manifest they cover.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Mosquitto, release, tinyota, write_config
from tests.test_http import request
from tinyota_mqtt.core.protocol import Announcement
from tinyota_mqtt.errors import TinyOTAError
from tinyota_mqtt.signing import Signer, Verifier, generate, verify


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
    assert len(public) == 130 and public.startswith("04")  # the uncompressed P-256 point, for config.h
    release(server.config, "kitchen", "1.0.0")
    server.call(server.service.tick)
    msg = probes(broker.url).subscribe(f"{prefix}/kitchen-1/update").wait_for(f"{prefix}/kitchen-1/update")
    body = json.loads(msg.payload)
    assert body["image"] == "kitchen" and len(body["sig"]) == 88, body  # base64 of the raw 64-byte r || s
    ann = Announcement(**body, device="kitchen-1")  # the device puts in its own id
    assert verify(public, ann.manifest(), body["sig"])
    # Every signed field matters: another URL, device, image, version, attempt, size or digest fails.
    for change in ({"url": "http://evil.example/fw.bin"}, {"device": "kitchen-2"}, {"image": "sensor"},
                   {"version": "1.0.1"}, {"id": "another-attempt"}, {"size": ann.size + 1},
                   {"md5": "f" * 32}, {"sha256": "f" * 64}):
        assert not verify(public, dataclasses.replace(ann, **change).manifest(), body["sig"]), change
    assert len(msg.payload) < 512  # still fits the device's MQTT buffer


def test_unsigned_by_default(tmp_path: Path) -> None:
    ann = Announcement("a", "1.0.0", "http://h/fw/k/1.0.0.bin", 1, "0" * 32, "0" * 64)
    assert b"sig" not in ann.payload()


def test_manifest_names_device_image_and_attempt() -> None:
    ann = Announcement("a1", "1.4.0", "http://ota.lan:8000/fw/kitchen/1.4.0.bin", 1000, "0" * 32, "1" * 64,
                       image="kitchen", device="kitchen-1")
    assert ann.manifest() == (b"tinyota-announcement-v2\nkitchen-1\nkitchen\na1\n1.4.0\n"
                              b"http://ota.lan:8000/fw/kitchen/1.4.0.bin\n1000\n" + b"0" * 32 + b"\n" + b"1" * 64)
    assert b"kitchen-1" not in ann.payload()  # never sent: the device supplies its own id


def test_signatures_are_raw_p256_and_malformed_ones_fail(tmp_path: Path) -> None:
    signer = generate(tmp_path / "k")
    sig = signer.sign(b"message")
    # Equal announcements must be equal bytes (re-publishing, the retained-topic watch compare them).
    assert signer.sign(b"message") == sig and signer.sign(b"other") != sig
    raw = base64.b64decode(sig)
    assert len(raw) == 64
    verifier = Verifier(signer.public_key)
    assert verifier.verify(b"message", sig)
    assert not verifier.verify(b"messagE", sig)
    for bad in ("", "not base64!", base64.b64encode(raw[:63]).decode(), base64.b64encode(bytes(64)).decode()):
        assert not verifier.verify(b"message", bad), bad
    with pytest.raises(TinyOTAError, match="public key"):
        Verifier("04" + "00" * 64)  # not a point on the curve
    with pytest.raises(TinyOTAError, match="public key"):
        Verifier(signer.public_key[2:])


def test_an_old_ed25519_key_is_refused_with_a_way_out(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    path = tmp_path / "old.key"
    path.write_bytes(ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with pytest.raises(TinyOTAError) as err:
        Signer.load(path)
    assert "P-256" in str(err.value) and "keygen" in str(err.value.hint or "")
