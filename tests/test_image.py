"""Images checked for their chip: real images built by esptool, ours read back by esptool.

esptool (a dev dependency only) is the reference: ``elf2image`` lays out real app images from a
tiny ELF this file writes, and ``image_info`` / ``LoadFirmwareImage`` read the test images that
``make_test_image`` produces, so our layout is checked against the real tool both ways.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import ServerThread, write_config
from tests.test_http import HTTP_ONLY, request
from tinyota_mqtt.core import image
from tinyota_mqtt.core.image import BadImage, describe, make_test_image
from tinyota_mqtt.errors import StoreError
from tinyota_mqtt.store import FirmwareStore

# Where each chip keeps flash-mapped data (the app descriptor's segment) and data RAM: esptool's
# targets/<chip>.py DROM_MAP_START and MEMORY_MAP "DRAM".
CHIPS: dict[str, tuple[int, int, int]] = {  # platform: (e_machine, DROM, DRAM)
    "esp8266": (0x5E, 0, 0x3FFE8000),
    "esp32": (0x5E, 0x3F400000, 0x3FFB0000),
    "esp32s2": (0x5E, 0x3F000000, 0x3FFB0000),
    "esp32s3": (0x5E, 0x3C000000, 0x3FC88000),
    "esp32c2": (0xF3, 0x3C000000, 0x3FCA0000),
    "esp32c3": (0xF3, 0x3C000000, 0x3FC80000),
    "esp32c6": (0xF3, 0x42800000, 0x40800000),
    "esp32h2": (0xF3, 0x42800000, 0x40800000),
}
ESPTOOL = [sys.executable, "-m", "esptool"]


def tiny_elf(machine: int, entry: int, sections: list[tuple[str, int, bytes]]) -> bytes:
    """An ELF32 little-endian file with just the allocated PROGBITS sections given and a section
    name table: what esptool's ELFFile reads (section headers; no program headers needed)."""
    names = b"\x00.shstrtab\x00" + b"".join(n.encode() + b"\x00" for n, _, _ in sections)
    body = bytearray(0x34)
    offsets = []
    for _, _, data in sections:
        body += bytes(-len(body) % 4)
        offsets.append(len(body))
        body += data
    names_at = len(body)
    body += names + bytes(-(len(body) + len(names)) % 4)
    headers = [bytes(40)]
    name_at = len(b"\x00.shstrtab\x00")
    for (name, addr, data), offset in zip(sections, offsets, strict=True):
        # SHT_PROGBITS, SHF_ALLOC|SHF_EXECINSTR, address, file offset, size, align 4
        headers.append(struct.pack("<10I", name_at, 1, 0x6, addr, offset, len(data), 0, 0, 4, 0))
        name_at += len(name) + 1
    headers.append(struct.pack("<10I", 1, 3, 0, 0, names_at, len(names), 0, 0, 1, 0))  # SHT_STRTAB
    shoff = len(body)
    body += b"".join(headers)
    ident = b"\x7fELF\x01\x01\x01" + bytes(9)  # 32-bit, little-endian, version 1
    body[:0x34] = struct.pack("<16sHHIIIIIHHHHHH", ident, 2, machine, 1, entry, 0, shoff, 0, 0x34, 0, 0, 40,
                              len(headers), len(headers) - 1)
    return bytes(body)


def app_desc(version: str, project: str, idf: str, secure_version: int = 0) -> bytes:
    """esp_app_desc_t (esp_app_desc.h), 256 bytes."""
    raw = struct.pack("<II8x32s32s16s16s32s", image.APP_DESC_MAGIC, secure_version, version.encode(),
                      project.encode(), b"12:00:00", b"Jan  1 2026", idf.encode())
    return raw + bytes(256 - len(raw))


def elf2image(tmp_path: Path, chip: str, version: str = "1.2.3", *, data_len: int = 3000) -> bytes:
    """A real app image for ``chip``, laid out by esptool from a tiny ELF."""
    machine, drom, dram = CHIPS[chip]
    marker = image.VERSION_MARKER + version.encode() + b"\x00"
    data = (marker + bytes(range(256)) * (data_len // 256 + 1))[:data_len]
    sections = [(".dram0.data", dram, data)]
    if drom:
        sections.insert(0, (".flash.appdesc", drom + 0x20, app_desc(version, "tinyota-e2e", "v5.3.1", 7)))
    elf = tmp_path / f"{chip}.elf"
    elf.write_bytes(tiny_elf(machine, dram, sections))
    out = tmp_path / f"{chip}-"
    args = [*ESPTOOL, "--chip", chip, "elf2image", "--flash-mode", "dio", "--flash-size", "4MB",
            "-o", str(out) if chip == "esp8266" else f"{out}.bin", str(elf)]
    subprocess.run(args, check=True, capture_output=True, timeout=60)
    return (tmp_path / (f"{chip}-0x00000.bin" if chip == "esp8266" else f"{chip}-.bin")).read_bytes()


def esptool_info(path: Path) -> str:
    done = subprocess.run([*ESPTOOL, "image-info", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def real_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    where = tmp_path_factory.mktemp("elf2image")
    return {chip: elf2image(where, chip) for chip in CHIPS}


# -- real images, built by esptool -----------------------------------------------------------------

@pytest.mark.parametrize("chip", list(CHIPS))
def test_an_elf2image_image_is_read_as_its_chip(real_images: dict[str, bytes], chip: str, tmp_path: Path) -> None:
    from esptool.bin_image import LoadFirmwareImage

    data = real_images[chip]
    info = describe(data)
    reference = LoadFirmwareImage(chip, data)
    assert info.chip == chip
    assert info.segments == len(reference.segments)
    assert info.flash_mode == "dio" and info.flash_size == "4MB"
    freq_nibble = reference.flash_size_freq & 0xF  # each chip's own default clock, in its own coding
    assert info.flash_freq in [k for k, v in reference.ROM_LOADER.FLASH_FREQUENCY.items() if v == freq_nibble]
    assert info.length == len(data)
    if chip == "esp8266":
        assert info.app is None and not info.sha256_appended
    else:
        assert info.sha256_appended
        assert info.app == image.AppDescriptor(project_name="tinyota-e2e", version="1.2.3", idf_version="v5.3.1",
                                               secure_version=7, compiled="Jan  1 2026 12:00:00")
    assert image.find_version(data) == "1.2.3"


@pytest.mark.parametrize("platform", ["esp8266", "esp32", "esp32s3", "esp32c3", "esp32c6"])
def test_make_test_image_passes_esptools_image_info(tmp_path: Path, platform: str) -> None:
    path = tmp_path / "fw.bin"
    path.write_bytes(make_test_image("2.0.0", 5000, platform=platform))
    report = esptool_info(path)
    assert "Checksum:" in report and "(valid)" in report.split("Checksum:")[1].splitlines()[0]
    if platform != "esp8266":
        chip_id = next(i for i, p in image.CHIP_IDS.items() if p == platform)
        assert f"Chip ID: {chip_id} " in report
        assert "(valid)" in report.split("Validation hash:")[1].splitlines()[0]
        assert "App version: 2.0.0" in report and "Project name: tinyota-test" in report
    assert "Flash mode: DIO" in report and "Flash size: 4MB" in report


def test_a_corrupted_test_image_fails_esptools_check_too(tmp_path: Path) -> None:
    # The other direction of the check above: esptool must notice what we call corrupt.
    data = bytearray(make_test_image("2.0.0", 5000, platform="esp32"))
    data[400] ^= 0x01
    path = tmp_path / "fw.bin"
    path.write_bytes(data)
    assert "invalid" in esptool_info(path).split("Checksum:")[1].splitlines()[0]
    with pytest.raises(BadImage, match="checksum"):
        describe(bytes(data))


@pytest.mark.parametrize("chip", ["esp8266", "esp32", "esp32c3"])
def test_every_truncation_of_a_real_image_is_refused(real_images: dict[str, bytes], chip: str) -> None:
    data = real_images[chip]
    for cut in range(1, len(data)):  # every prefix: inside a header, a segment, the checksum, the digest
        with pytest.raises(BadImage, match=r"truncated|ends after"):  # said as such, not as "corrupt"
            describe(data[:cut])


def test_trailing_bytes_are_tolerated(real_images: dict[str, bytes]) -> None:
    # Arduino's ESP8266 .bin is eboot's image with the app behind it; a signed ESP32 image has its
    # signature block after the digest.
    for data in real_images.values():
        assert describe(data + b"\xaa" * 4096).length == len(data)


def test_corruption_is_caught_by_checksum_or_digest(real_images: dict[str, bytes]) -> None:
    data = bytearray(real_images["esp32s3"])
    data[100] ^= 0x10
    with pytest.raises(BadImage, match="checksum"):
        describe(bytes(data))
    data[101] ^= 0x10  # a second flip of the same bit: the XOR checksum is fooled, the SHA-256 is not
    with pytest.raises(BadImage, match="SHA-256"):
        describe(bytes(data))


def test_malformed_headers() -> None:
    good = bytearray(make_test_image("1.0.0", 2000, platform="esp32"))
    cases: list[tuple[bytes, str]] = [
        (bytes([0xEA, 4, 2, 0x40]) + bytes(100), "v2"),
        (b"\x7fELF" + bytes(100), "not an ESP firmware image"),
        (bytes(good[:1]) + b"\x00" + bytes(good[2:]), "0 segments"),
        (bytes(good[:1]) + b"\x11" + bytes(good[2:]), "17 segments"),
        (bytes(good[:23]) + b"\x02" + bytes(good[24:]), "hash_appended"),
        (b"", "empty"),
    ]
    for data, message in cases:
        with pytest.raises(BadImage, match=message):
            describe(data)


def test_an_unknown_chip_id_is_named() -> None:
    data = bytearray(make_test_image("1.0.0", 2000, platform="esp32"))
    data[12:14] = (99).to_bytes(2, "little")
    data[-32:] = hashlib.sha256(bytes(data[:-32])).digest()
    info = describe(bytes(data))
    assert info.chip == "chip id 99"
    assert image.chip_mismatch(info, "esp32", "image 'sensor'") == (
        "this firmware is built for the chip id 99, but image 'sensor' is configured for the ESP32 (platform: esp32)")


# -- gzip: ESP8266 only ------------------------------------------------------------------------------

def test_gzip_of_an_esp8266_image_is_read_inside() -> None:
    info = describe(gzip.compress(make_test_image("1.0.0", 20_000)))
    assert info.gzip and info.chip == "esp8266" and info.summary().startswith("ESP8266 (gzip)")


@pytest.mark.parametrize(("data", "message"), [
    (gzip.compress(make_test_image("1.0.0", 20_000, platform="esp32c3")), "holds an ESP32-C3 image"),
    (gzip.compress(make_test_image("1.0.0", 20_000))[:-9], "truncated"),
    (b"\x1f\x8b" + bytes(50), "corrupt"),
    (gzip.compress(b"hello"), "inside the gzip: this is not an ESP firmware image"),
    (gzip.compress(make_test_image("1.0.0", 20_000)[:5000]), "inside the gzip: the image is truncated"),
])
def test_bad_gzip_images_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(BadImage, match=message):
        describe(data)


def test_a_gzip_bomb_is_refused_without_inflating_it_all() -> None:
    with pytest.raises(BadImage, match="inflates past"):
        describe(gzip.compress(b"\xe9" + bytes(image.MAX_INFLATED + 100)))


# -- the parser never fails any other way ----------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.sampled_from(["esp8266", "esp32", "esp32s3", "esp32c6"]),
       st.integers(min_value=0, max_value=599))
def test_parser_raises_only_bad_image(noise: bytes, platform: str, at: int) -> None:
    base = make_test_image("1.0.0", 600, platform=platform)
    for data in (b"\xe9" + noise, base[:at] + noise, base[:at] + noise[:8] + base[at + 8:]):
        try:
            info = describe(data)
        except BadImage:
            continue
        assert info.segments >= 1 and info.length <= len(data)


# -- the store refuses the wrong chip, records what it found ---------------------------------------

@pytest.fixture
def store(tmp_path: Path) -> FirmwareStore:
    return FirmwareStore(tmp_path / "store")


def put(store: FirmwareStore, data: bytes, version: str = "1.0.0", **kw: Any) -> Any:
    path = store.root.parent / "upload.bin"
    path.write_bytes(data)
    return store.add_file(path, "sensor", version, **kw)


def test_an_esp8266_image_is_refused_for_an_esp32_image(store: FirmwareStore) -> None:
    with pytest.raises(StoreError) as caught:
        put(store, make_test_image("1.0.0"), platform="esp32")
    assert caught.value.message == ("this firmware is built for the ESP8266, but image 'sensor' is configured for "
                                    "the ESP32 (platform: esp32)")
    assert "brick" in (caught.value.hint or "") and "--force" in (caught.value.hint or "")
    assert store.releases() == [] and list((store.root / ".incoming").iterdir()) == []


@pytest.mark.parametrize(("built", "configured"), [("esp32s3", "esp32"), ("esp32", "esp32s3"),
                                                   ("esp32c3", "esp32c6"), ("esp32", "esp8266")])
def test_each_esp32_variant_is_told_apart(store: FirmwareStore, built: str, configured: str) -> None:
    with pytest.raises(StoreError, match=f"built for the {image.CHIP_NAMES[built]}, "):
        put(store, make_test_image("1.0.0", platform=built), platform=configured)
    assert put(store, make_test_image("1.0.0", platform=built), platform=built).firmware.chip == built


def test_truncated_upload_is_refused_at_release(store: FirmwareStore) -> None:
    with pytest.raises(StoreError, match="truncated") as caught:
        put(store, make_test_image("1.0.0", 50_000, platform="esp32")[:40_000], platform="esp32")
    assert "--force" in (caught.value.hint or "")


def test_release_metadata_records_the_image_and_survives_a_reload(store: FirmwareStore) -> None:
    rel = put(store, make_test_image("1.0.0", 8000, platform="esp32c6", project="sensor-fw"), platform="esp32c6")
    assert rel.firmware.chip == "esp32c6" and rel.firmware.app.project_name == "sensor-fw"
    meta = json.loads((store.root / "sensor" / "1.0.0.json").read_text())
    assert meta["firmware"]["chip"] == "esp32c6" and meta["firmware"]["chip_name"] == "ESP32-C6"
    assert meta["firmware"]["app"]["version"] == "1.0.0" and meta["firmware"]["flash_size"] == "4MB"
    assert FirmwareStore(store.root).get("sensor", "1.0.0") == rel


def test_force_releases_the_wrong_chip_and_says_what_it_is(store: FirmwareStore) -> None:
    rel = put(store, make_test_image("1.0.0"), platform="esp32", force=True)
    assert rel.firmware.chip == "esp8266"  # still recorded, so the dashboard shows what it really is
    garbage = put(store, b"plain text", version="1.0.1", platform="esp32", force=True)
    assert garbage.firmware is None


def test_metadata_written_before_image_checks_still_reads(store: FirmwareStore) -> None:
    rel = put(store, make_test_image("1.0.0"))
    meta = store.root / "sensor" / "1.0.0.json"
    old = json.loads(meta.read_text())
    del old["firmware"]
    meta.write_text(json.dumps(old))
    assert FirmwareStore(store.root).get("sensor", "1.0.0").firmware is None
    assert FirmwareStore(store.root).get("sensor", "1.0.0").md5 == rel.md5


# -- the API and the dashboard say it --------------------------------------------------------------

ADMIN = {"user": "admin", "password": "admin-secret"}


def test_api_refuses_the_wrong_chip_unless_forced_and_shows_the_image(tmp_path: Path, servers: Any) -> None:
    server: ServerThread = servers(write_config(tmp_path), HTTP_ONLY)
    wrong = make_test_image("1.0.0", 9000)  # ESP8266, but sensor is configured as esp32
    resp, body = request(server, "POST", "/api/releases?image=sensor&version=1.0.0", body=wrong, **ADMIN)
    assert resp.status == 400 and "built for the ESP8266" in json.loads(body)["error"], body
    resp, body = request(server, "POST", "/api/releases?image=sensor&version=1.0.0&force=1", body=wrong, **ADMIN)
    assert resp.status == 201 and json.loads(body)["firmware"]["chip"] == "esp8266"
    right = make_test_image("1.1.0", 9000, platform="esp32", project="sensor-fw")
    resp, body = request(server, "POST", "/api/releases?image=sensor&version=1.1.0", body=right, **ADMIN)
    assert resp.status == 201, body
    resp, listing = request(server, "GET", "/api/releases?image=sensor", **ADMIN)
    assert [r["firmware"]["chip"] for r in json.loads(listing)] == ["esp8266", "esp32"]
    resp, page = request(server, "GET", "/releases", **ADMIN)
    text = page.decode()
    assert "sensor-fw 1.1.0" in text and "ESP32" in text
    assert "not the configured ESP32<" in text  # the forced ESP8266 release is flagged


def test_a_sweep_while_the_image_is_checked_leaves_the_upload_alone(store: FirmwareStore,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # Parsing takes a while for a big image; the upload stays locked against sweep() meanwhile.
    real = image.describe
    swept: list[object] = []

    def describe_then_sweep(data: Any) -> image.ImageInfo:
        swept.extend(store.sweep())
        return real(data)

    monkeypatch.setattr(image, "describe", describe_then_sweep)
    rel = put(store, make_test_image("1.0.0", platform="esp32"), platform="esp32")
    assert swept == [] and store.path_of(rel).is_file()
