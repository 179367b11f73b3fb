"""One table of size limits for the device and the server: esp_client/limits.json.

The device core's limits live in C++ (esp_client/src/tinyota/limits.h); the server's in its
parsers and builders. Both are checked here against the same table, so a limit changed on one
side only turns this red instead of showing up as updates every device silently refuses.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tinyota_mqtt.core import protocol, semver

TABLE = json.loads((ROOT / "esp_client" / "limits.json").read_text())["limits"]
HEADER = (ROOT / "esp_client" / "src" / "tinyota" / "limits.h").read_text()


def test_limits_h_and_the_table_hold_the_same_numbers() -> None:
    in_header = {name: int(value) for name, value in
                 re.findall(r"static const size_t (k\w+) = (\d+);", HEADER)}
    assert in_header == {name: row["value"] for name, row in TABLE.items()}
    assert {row["server"] for row in TABLE.values()} <= {"stays inside", "accepts", "not enforced", "device only"}


def limit(name: str) -> int:
    return int(TABLE[name]["value"])


def test_the_server_never_releases_a_version_the_device_cannot_hold() -> None:
    longest = "1.0.0-" + "a" * (limit("kMaxVersionLen") - 6)
    assert semver.is_valid(longest)
    assert not semver.is_valid(longest + "a")
    assert limit("kMaxVersionLen") == semver.MAX_LENGTH


def test_device_ids_the_server_accepts_fit_the_device() -> None:
    assert protocol.DEVICE_ID.fullmatch("d" * limit("kMaxDeviceIdLen"))
    assert not protocol.DEVICE_ID.fullmatch("d" * (limit("kMaxDeviceIdLen") + 1))


def test_the_config_refuses_ids_images_and_prefixes_the_device_cannot_hold() -> None:
    from tinyota_mqtt.config import parse_config
    from tinyota_mqtt.errors import ConfigError

    def problems(image: str, device: str, prefix: str) -> list[str]:
        text = (f"mqtt: {{prefix: {prefix}}}\nimages: {{{image}: {{platform: esp8266}}}}\n"
                f"groups: {{g: {{image: {image}}}}}\ndevices: {{{device}: {{group: g}}}}\n")
        try:
            parse_config(text)
        except ConfigError as error:
            return error.problems
        return []

    image, device, prefix = "i" * limit("kMaxImageLen"), "d" * limit("kMaxDeviceIdLen"), "p" * limit("kMaxPrefixLen")
    assert problems(image, device, prefix) == []
    found = problems(image + "i", device + "d", prefix + "p")
    where = [p.split(":", 2)[1] for p in found]  # "1] mqtt.prefix" and so on
    assert where == ["1] mqtt.prefix", "2] images", "3] groups.g.image", "4] devices"], found
    assert all("is 65 characters long" in p and "at most 64" in p for p in found)


def test_the_largest_announcement_the_server_builds_fits_the_device(tmp_path: Path) -> None:
    from tinyota_mqtt.signing import generate

    signer = generate(tmp_path / "signing.key")
    # The longest URL the device takes, with the longest version in it.
    version = "1.0.0-" + "a" * (limit("kMaxVersionLen") - 6)
    tail = len(f"/fw/{'k' * 64}/{version}.bin")
    url = protocol.firmware_url("http://" + "h" * (limit("kMaxUrlLen") - len("http://") - tail), "k" * 64, version)
    ann = protocol.Announcement(id="f" * 12, version=version, url=url,
                                size=2**32, md5="0" * limit("kMd5HexLen"), sha256="f" * limit("kSha256HexLen"),
                                image="k" * limit("kMaxImageLen"), device="d" * limit("kMaxDeviceIdLen"))
    ann = replace(ann, sig=signer.sign(ann.manifest()))  # a signature adds 88 characters
    assert len(ann.sig or "") == limit("kSignatureBase64Len")
    assert len(base64.b64decode(ann.sig or "")) == limit("kSignatureLen")
    assert len(bytes.fromhex(signer.public_key)) == limit("kPublicKeyLen")
    assert len(ann.id) <= limit("kMaxAnnouncementIdLen") and len(url) == limit("kMaxUrlLen")
    assert len(ann.payload()) <= limit("kMaxPayloadLen"), len(ann.payload())


@pytest.mark.parametrize(("field", "name"), [("error", "kMaxErrorLen"), ("platform", "kMaxPlatformLen"),
                                             ("version", "kMaxVersionLen"), ("id", "kMaxAnnouncementIdLen")])
def test_the_server_accepts_every_status_field_the_device_can_send(field: str, name: str) -> None:
    status = protocol.parse_status(json.dumps({"state": "failed", field: "x" * limit(name)}).encode())
    assert getattr(status, field) == "x" * limit(name)


def test_the_server_accepts_a_status_as_long_as_the_device_sends() -> None:
    assert limit("kMaxStatusLen") <= protocol.MAX_STATUS_BYTES
    padded = b'{"state":"idle"' + b" " * (limit("kMaxStatusLen") - 16) + b"}"
    assert len(padded) == limit("kMaxStatusLen") and protocol.parse_status(padded).state == "idle"
