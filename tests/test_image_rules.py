"""The image parser's rules (core/image.py) on images this file lays out itself, no tools run.

``build`` below writes app images from the layout in ESP-IDF's "App Image Format" (the summary is
core/image.py's docstring) independently of ``make_test_image``: a plain XOR loop for the
checksum, struct for the headers. So a parser that reads a field from the wrong place, or checks a
bound one byte off, disagrees with it. test_image.py checks the same parser against esptool's real
images and the store and API on top; this file is what the mutation run's ``core`` scope runs, so
it stays fast and needs nothing but Python.
"""

from __future__ import annotations

import gzip
import hashlib
import mmap
import struct
import tracemalloc
import zlib
from dataclasses import replace
from functools import cache, reduce
from pathlib import Path

import pytest

from tinyota_mqtt.core import image
from tinyota_mqtt.core.image import AppDescriptor, BadImage, ImageInfo, describe, make_test_image

CHIP_ID = {name: chip_id for chip_id, name in image.CHIP_IDS.items()}


def app_desc(version: bytes = b"1.0.0", project: bytes = b"proj", *, time: bytes = b"12:00:00",
             date: bytes = b"Jan  1 2026", idf: bytes = b"v5.3", secure_version: int = 0) -> bytes:
    """esp_app_desc_t (esp_app_desc.h): magic, secure_version, 8 reserved bytes, then the texts."""
    raw = struct.pack("<II8x32s32s16s16s32s", image.APP_DESC_MAGIC, secure_version, version, project, time, date,
                      idf)
    return raw + bytes(256 - len(raw))


def build(*segments: bytes, platform: str = "esp32", mode: int = 2, size_freq: int = 0x20,
          hash_appended: int = 1, chip_id: int | None = None, count: int | None = None, min_rev: int = 0) -> bytes:
    """An app image with these segments; the checksum and (if appended) the SHA-256 are right."""
    header = struct.pack("<BBBBI", 0xE9, len(segments) if count is None else count, mode, size_freq, 0x40080000)
    if platform != "esp8266":
        chip = CHIP_ID[platform] if chip_id is None else chip_id
        # WP pin, three drive-strength bytes, chip id, min revision (legacy), min and max revision, 4 reserved
        header += struct.pack("<BBBBHBHH4xB", 0xEE, 0, 0, 0, chip, min_rev, 100 * min_rev, 0, hash_appended)
    out = bytearray(header)
    for index, data in enumerate(segments):
        out += struct.pack("<II", 0x3F400020 + 0x10000 * index, len(data)) + data
    while len(out) % 16 != 15:
        out.append(0)
    out.append(reduce(lambda a, b: a ^ b, b"".join(segments), 0xEF))
    if platform != "esp8266" and hash_appended == 1:
        out += hashlib.sha256(out).digest()
    return bytes(out)


def refused(data: bytes) -> str:
    with pytest.raises(BadImage) as caught:
        describe(data)
    return caught.value.message


# -- what a whole image says about itself ------------------------------------------------------------

FREQ_AT_NIBBLE_0 = {"esp8266": "40m", "esp32": "40m", "esp32s2": "40m", "esp32s3": "40m", "esp32c3": "40m",
                    "esp32p4": "40m", "esp32c2": "30m", "esp32c6": "80m", "esp32c5": "40m", "esp32c61": "40m",
                    "esp32h2": "24m"}


@pytest.mark.parametrize("platform", image.PLATFORMS)
def test_a_test_image_reads_back_as_it_was_made(platform: str) -> None:
    data = make_test_image("1.2.3", 2000, platform=platform, project="sensor-fw")
    assert len(data) == 2000
    esp32 = platform != "esp8266"
    app = AppDescriptor(project_name="sensor-fw", version="1.2.3", idf_version="v5.1-tinyota-test",
                        secure_version=0, compiled="") if esp32 else None
    # 2000 bytes is exactly a header, one segment, padding, the checksum (and the digest).
    assert describe(data) == ImageInfo(chip=platform, segments=1, flash_mode="dio", flash_size="4MB",
                                       flash_freq=FREQ_AT_NIBBLE_0[platform], length=2000, sha256_appended=esp32,
                                       gzip=False, app=app)
    assert image.find_version(data) == "1.2.3"
    assert image.kind(data) == "esp" and image.family(platform) == ("esp32" if esp32 else "esp8266")


DROM = {"esp32": 0x3F400000, "esp32s2": 0x3F000000, "esp32s3": 0x3C000000, "esp32c2": 0x3C000000,
        "esp32c3": 0x3C000000, "esp32c5": 0x42000000, "esp32c6": 0x42800000, "esp32c61": 0x42800000,
        "esp32h2": 0x42800000, "esp32p4": 0x40000000}


def test_a_test_image_boots_on_any_revision_of_its_chip() -> None:
    # The header fields the parser does not read, but a bootloader and esptool do.
    for platform in ("esp32", "esp32c3"):
        data = make_test_image("1.0.0", 2000, platform=platform)
        entry, = struct.unpack_from("<I", data, 4)
        wp, drive, chip, legacy_rev, min_rev, max_rev, hashed = struct.unpack_from("<B3sHBHH4xB", data, 8)
        assert entry == 0x40080000
        assert (wp, drive, chip) == (0xEE, bytes(3), CHIP_ID[platform])  # no WP pin, default drive strengths
        assert (legacy_rev, min_rev, max_rev, hashed) == (0, 0, 0, 1)  # any revision (0: no maximum set)
    # Its one segment loads where the chip maps flash data, past the 0x20 bytes of image header
    # that mapping starts with: where ESP-IDF links the app descriptor (esptool DROM_MAP_START).
    for platform, drom in DROM.items():
        assert struct.unpack_from("<I", make_test_image("1.0.0", 2000, platform=platform), 24) == (drom + 0x20,)
    data = make_test_image("1.0.0")
    assert len(data) == 4096 and struct.unpack_from("<I", data, 4) == (0x40100000,)  # entry: the ESP8266's IRAM
    assert struct.unpack_from("<I", data, 8) == (0x3FFE8000,)  # the segment: its data RAM
    assert describe(make_test_image("1.0.0", platform="esp32")).app.project_name == "tinyota-test"  # type: ignore[union-attr]


def test_a_test_image_is_filled_to_its_size_with_the_fill_given() -> None:
    data = make_test_image("1.0.0", 2010, fill=b"ab")
    assert len(data) == 2010 and describe(data).length == 2000  # the image, then filler (tolerated)
    marker = image.VERSION_MARKER + b"1.0.0\x00"
    # esp8266: an 8-byte header, the segment's (its length at 12), then the marker and the fill.
    assert struct.unpack_from("<I", data, 12) == (1980,)
    assert data[16:16 + 1980] == (marker + b"ab" * 1000)[:1980]
    assert data[2000:] == b"ab" * 5
    assert make_test_image("1.0.0", 2000, fill=b"") == make_test_image("1.0.0", 2000)  # no fill: 0xff


def test_a_test_image_refuses_what_it_cannot_make() -> None:
    with pytest.raises(ValueError, match="no chip id known for platform 'esp99'"):
        make_test_image("1.0.0", platform="esp99")
    # The smallest ESP8266 test image is its 28-byte marker alone, in a 28-byte segment.
    assert image.find_version(make_test_image("1.0.0-rc", 48)) == "1.0.0-rc"
    with pytest.raises(ValueError, match="size 47 is too small for a esp8266 test image"):
        make_test_image("1.0.0-rc", 47)
    # On the ESP32 family the marker follows the 256-byte app descriptor at once.
    small = make_test_image("1.0.0", 400, platform="esp32")
    assert describe(small).app is not None
    assert small[32 + 256:32 + 256 + 25] == image.VERSION_MARKER + b"1.0.0\x00"


def test_images_of_any_segment_count_from_1_to_16_are_read() -> None:
    for count in (1, 2, 16):
        segments = [bytes([i]) * (4 * i + 4) for i in range(count)]
        for platform in ("esp8266", "esp32"):
            data = build(*segments, platform=platform)
            info = describe(data)
            assert (info.segments, info.length, info.chip) == (count, len(data), platform)


# The big inputs are made once per process (the mutation run forks its test runs from one that
# has them), so each of its hundreds of runs pays for the check, not for making the input.

@cache
def checksummed() -> list[bytes]:
    """Images whose segment lengths lie around the parser's 1 MiB fold, and odd ones, of bytes
    that differ in every bit position."""
    noise = bytes((i * 131 + (i >> 8) * 7) & 0xFF for i in range((1 << 20) + 7))
    return [build(noise[:length]) for length in (1, 2, 3, 255, 1 << 20, (1 << 20) + 7)]


def test_the_checksum_is_the_xor_of_every_segment_byte_across_mib_boundaries() -> None:
    for data in checksummed():
        assert describe(data).length == len(data)
        wrong = bytearray(data)
        wrong[-33] ^= 0x01  # the checksum byte, before the digest
        assert "checksum byte is" in refused(bytes(wrong))


def test_trailing_bytes_after_the_image_are_not_part_of_it() -> None:
    data = build(b"\x01" * 100)
    info = describe(data + b"\xaa" * 500)  # a signature block, or the app behind eboot
    assert info.length == len(data)


def test_the_header_names_flash_mode_size_and_clock() -> None:
    def info(**kw: int) -> ImageInfo:
        return describe(build(b"\x00" * 8, **kw))  # type: ignore[arg-type]

    assert [info(mode=m).flash_mode for m in range(7)] == \
        ["qio", "qout", "dio", "dout", "fast_read", "slow_read", "0x06"]  # past the table: the raw byte
    assert [info(size_freq=n << 4).flash_size for n in (0, 7, 8, 15)] == ["1MB", "128MB", "0x8", "0xf"]
    assert [info(size_freq=f).flash_freq for f in (0x0, 0x1, 0x2, 0xF, 0x3)] == ["40m", "26m", "20m", "80m", "0x3"]
    assert info(size_freq=0x2F).flash_size == "4MB"  # the nibbles do not mix
    assert info(platform="esp32c2", size_freq=0xF).flash_freq == "60m"  # each chip its own clocks

    def esp8266(size_freq: int) -> ImageInfo:
        return describe(build(b"\x00" * 8, platform="esp8266", size_freq=size_freq))

    assert [esp8266(n << 4).flash_size for n in (0, 1, 2, 5, 6, 9, 7)] == \
        ["512KB", "256KB", "1MB", "2MB-c1", "4MB-c1", "16MB", "0x7"]  # the ESP8266's own table


def test_the_chip_is_read_whatever_revision_the_image_requires() -> None:
    # The chip id is two bytes; the legacy minimum revision is the byte after it (v3.0: 3).
    for platform in ("esp32", "esp32s3"):
        data = build(b"\x00" * 8, platform=platform, min_rev=3)
        assert describe(data).chip == platform
        assert refused(data[:-1]).startswith("the image is truncated: its header says a SHA-256")  # read as ESP32


def test_an_unknown_chip_id_is_named_and_read_with_no_clock_table() -> None:
    info = describe(build(b"\x00" * 8, chip_id=99, size_freq=0x2F))
    assert (info.chip, info.chip_name, info.flash_size, info.flash_freq) == ("chip id 99", "chip id 99", "4MB", "0xf")


def test_without_hash_appended_an_esp32_image_ends_at_its_checksum() -> None:
    data = build(b"\x05" * 40, hash_appended=0)
    info = describe(data)
    assert (info.sha256_appended, info.length) == (False, len(data))


# -- the app descriptor --------------------------------------------------------------------------------

def test_the_app_descriptor_opens_the_first_segment() -> None:
    desc = app_desc(b"2.0.0-rc.1", b"kitchen", idf=b"v5.3.1", secure_version=7)
    assert describe(build(desc + b"\x00" * 16)).app == AppDescriptor(
        project_name="kitchen", version="2.0.0-rc.1", idf_version="v5.3.1", secure_version=7,
        compiled="Jan  1 2026 12:00:00")
    assert describe(build(desc[:255])).app is None  # a segment too short to hold one
    assert describe(build(desc)).app is not None  # exactly one: 256 bytes
    assert describe(build(b"\x00" * 4 + desc[4:])).app is None  # no magic, no descriptor
    assert describe(build(b"\x00" * 300, desc)).app is None  # only the first segment counts
    assert describe(build(desc, platform="esp8266")).app is None  # the ESP8266 has none


def test_descriptor_texts_end_at_their_nul_and_show_only_printable_characters() -> None:
    desc = app_desc(b"1.0\x00junk\x00more", b"my\x01proj\x7f", idf=b"v5\xff", time=b"", date=b"Mar  1 2026")
    app = describe(build(desc)).app
    assert app is not None
    assert (app.version, app.project_name, app.idf_version, app.compiled) == \
        ("1.0", "my?proj?", "v5\ufffd", "Mar  1 2026")
    assert describe(build(app_desc(time=b"", date=b""))).app.compiled == ""  # type: ignore[union-attr]
    assert describe(build(app_desc(time=b"08:15:00", date=b""))).app.compiled == "08:15:00"  # type: ignore[union-attr]


# -- what is refused, and in which words -----------------------------------------------------------

def test_files_that_are_no_esp_app_image_are_refused_with_a_hint() -> None:
    cases = [
        (b"", "the firmware file is empty", ""),
        (bytes([0xEA, 4, 2, 0x40]) + bytes(100),
         "this is an ESP8266 SDK \"v2\" image (first byte 0xea); ESP8266httpUpdate flashes only images that start "
         "with 0xe9", "build it with the Arduino ESP8266 core's elf2bin"),
        (b"\x7fELF" + bytes(100), "this is not an ESP firmware image (first byte 0x7f, expected 0xe9, or gzip 1f 8b)",
         "release the .bin the build produced (not the .elf)"),
    ]
    for data, message, hint in cases:
        with pytest.raises(BadImage) as caught:
            describe(data)
        assert (caught.value.message, caught.value.hint, str(caught.value)) == (message, hint, message)


def test_bad_headers_are_named() -> None:
    assert refused(build(b"\x00" * 8, count=0)) == "the header declares 0 segments (an app image has 1 to 16)"
    assert refused(build(*[b"\x00" * 4] * 17)) == "the header declares 17 segments (an app image has 1 to 16)"
    assert refused(build(b"\x00" * 8, hash_appended=2)) == \
        "the extended header's hash_appended byte is 2, not 0 or 1"
    assert refused(b"\xe9\x01\x02") == "the image ends after 3 bytes, inside its 8-byte header"


@pytest.mark.parametrize("platform", ["esp8266", "esp32s3"])
def test_each_kind_of_truncation_is_named(platform: str) -> None:
    segment = b"\x11" * 40
    data = build(segment, b"\x22" * 8, platform=platform)
    header = 8 if platform == "esp8266" else 24
    first, second = header + 8, header + 8 + 40 + 8  # where each segment's data starts
    checksum = second + 8 + 15 - (second + 8) % 16
    cases = {
        header: "the image is truncated: it ends inside the header of segment 1 of 2",
        first - 1: "the image is truncated: it ends inside the header of segment 1 of 2",
        first: "the image is truncated: segment 1 of 2 declares 40 bytes but only 0 follow",
        first + 39: "the image is truncated: segment 1 of 2 declares 40 bytes but only 39 follow",
        first + 40: "the image is truncated: it ends inside the header of segment 2 of 2",
        second + 8: "the image is truncated: it ends before its checksum byte",  # every byte of both segments
        checksum: "the image is truncated: it ends before its checksum byte",
    }
    if platform != "esp8266":
        digest = ("the image is truncated: its header says a SHA-256 digest follows the checksum, but the file "
                  "ends first")
        cases.update({checksum + 1: digest, checksum + 32: digest})
    assert {cut: refused(data[:cut]) for cut in cases} == cases
    assert describe(data).length == len(data) == checksum + 1 + (32 if platform != "esp8266" else 0)


def test_every_prefix_of_an_image_is_refused_as_truncated() -> None:
    for platform in ("esp8266", "esp32"):
        data = build(b"\x33" * 40, platform=platform)
        for cut in range(1, len(data)):
            message = refused(data[:cut])
            assert message.startswith("the image is truncated: ") or message.startswith("the image ends after"), \
                (platform, cut, message)


def test_corruption_is_caught_by_the_checksum_then_by_the_digest() -> None:
    data = bytearray(build(b"\x10\x20\x30\x40" * 10))
    data[40] ^= 0x04
    assert refused(bytes(data)) == \
        "the image is corrupt: its checksum byte is 0xef but its segments add up to 0xeb"
    data[41] ^= 0x04  # two flips of one bit: the XOR is fooled, the SHA-256 is not
    assert refused(bytes(data)) == "the image is corrupt: its appended SHA-256 does not match its contents"


def test_of_two_failed_readings_the_one_whose_header_fits_is_reported() -> None:
    # Both readings fail on a cut ESP32-S3 image. From 24 bytes on, its extended header names a
    # chip we know, so the ESP32 reading's reason is given; shorter, or with a chip id nobody
    # uses, the ESP8266 reading's (which takes the chip id, 9, for the first segment's length).
    data = build(b"\x00" * 40, platform="esp32s3")
    assert refused(data[:24]) == "the image is truncated: it ends inside the header of segment 1 of 1"
    assert refused(data[:23]) == "the image is truncated: segment 1 of 1 declares 9 bytes but only 7 follow"
    unknown = build(b"\x00" * 40, chip_id=0x3333)[:24]
    assert refused(unknown) == "the image is truncated: segment 1 of 1 declares 13107 bytes but only 8 follow"


def test_an_image_can_be_read_from_a_memory_map(tmp_path: Path) -> None:
    # The store parses an upload in place, mapped, not read into memory.
    path = tmp_path / "fw.bin"
    path.write_bytes(make_test_image("1.0.0", 5000, platform="esp32"))
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as view:
        assert describe(view) == describe(path.read_bytes())


# -- gzip, for the ESP8266 ---------------------------------------------------------------------------

def test_a_gzip_is_read_inside_and_says_so() -> None:
    plain = make_test_image("1.0.0", 20_000)
    assert describe(gzip.compress(plain)) == replace(describe(plain), gzip=True)


def test_bad_gzips_are_refused_in_words() -> None:
    esp32 = gzip.compress(make_test_image("1.0.0", 4000, platform="esp32c3"))
    with pytest.raises(BadImage) as caught:
        describe(esp32)
    assert (caught.value.message, caught.value.hint) == (
        "this gzip holds an ESP32-C3 image; only the ESP8266 core flashes gzip-compressed images",
        "release the uncompressed .bin for an ESP32")
    assert refused(gzip.compress(make_test_image("1.0.0", 20_000))[:-9]) == "the gzip stream is truncated"
    assert refused(b"\x1f\x8b" + bytes(50)).startswith("the gzip stream is corrupt (")
    # What is wrong inside is said as such, with its hint kept.
    with pytest.raises(BadImage) as caught:
        describe(gzip.compress(b"\x7fELF" + bytes(100)))
    assert caught.value.message == ("inside the gzip: this is not an ESP firmware image (first byte 0x7f, expected "
                                    "0xe9, or gzip 1f 8b)")
    assert caught.value.hint == "release the .bin the build produced (not the .elf)"


@cache
def at_the_limit() -> tuple[bytes, bytes]:
    """A gzip that inflates to exactly MAX_INFLATED bytes of image, and one a byte longer."""
    data = make_test_image("1.0.0", image.MAX_INFLATED)
    return gzip.compress(data), gzip.compress(data + b"\xff")


def test_a_gzip_may_inflate_to_exactly_the_limit_and_no_further() -> None:
    fits, too_big = at_the_limit()
    assert describe(fits).length == image.MAX_INFLATED
    assert refused(too_big) == "the gzip inflates past 4 MiB, more than an ESP8266 app can be"


@cache
def bomb() -> bytes:
    """A gzip of 64 MiB, made a MiB at a time."""
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    return packer.compress(b"\xe9") + b"".join(packer.compress(zeros) for _ in range(64)) + packer.flush()


def test_a_gzip_bomb_is_refused_without_inflating_it_all() -> None:
    data = bomb()
    tracemalloc.start()
    try:
        assert refused(data).startswith("the gzip inflates past")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20, f"refusing a 64 MiB bomb took {peak >> 20} MiB"  # it stops just past the 4 MiB limit


# -- chip and version -------------------------------------------------------------------------------

def test_a_chip_mismatch_names_both_chips() -> None:
    esp8266 = describe(make_test_image("1.0.0"))
    assert image.chip_mismatch(esp8266, "esp8266") is None
    assert image.chip_mismatch(esp8266, "esp32s3") == (
        "this firmware is built for the ESP8266, but this image is configured for the ESP32-S3 (platform: esp32s3)")
    assert image.chip_mismatch(esp8266, "esp99", "image 'x'") == (
        "this firmware is built for the ESP8266, but image 'x' is configured for the esp99 (platform: esp99)")


def test_the_declared_version_is_the_first_marker_followed_by_a_version_and_a_nul() -> None:
    marker = image.VERSION_MARKER
    assert image.find_version(marker + b"1.0.0\x00") == "1.0.0"  # at the very start of a window
    # The prefix alone (the code that searches for it) before and after the real one is skipped.
    assert image.find_version(b"\xe9" + marker + b"\x00" + marker + b"2.1.0\x00" + marker + b"\x00") == "2.1.0"
    assert image.find_version(marker + b"1.0.0\x00" + marker + b"2.0.0\x00") == "1.0.0"
    assert image.find_version(marker + b"\xff\xfe\x00" + marker + b"3.0.0\x00") == "3.0.0"  # not ASCII: skipped
    longest = b"1." + b"0" * 62
    assert image.find_version(marker + longest + b"\x00") == longest.decode()  # 64 characters
    assert image.find_version(marker + longest + b"0\x00") is None  # 65: no version, a stray string
    assert image.find_version(b"no marker here") is None


# -- stored with the release ---------------------------------------------------------------------------

def test_what_is_stored_with_a_release_reads_back_the_same() -> None:
    for data in (gzip.compress(make_test_image("1.0.0", 3000)), make_test_image("1.0.0", 3000, platform="esp32c6")):
        info = describe(data)
        assert ImageInfo.from_json(info.to_json()) == info
    # Metadata written before the gzip, digest and descriptor fields existed.
    old = {"chip": "esp8266", "segments": 1, "flash_mode": "dio", "flash_size": "4MB", "flash_freq": "40m",
           "length": 3000}
    assert ImageInfo.from_json(old) == ImageInfo("esp8266", 1, "dio", "4MB", "40m", 3000)


def test_the_stored_fields_are_the_documented_ones() -> None:
    # docs/protocol.md: what the API and the releases page show as a release's "firmware".
    info = describe(make_test_image("1.0.0", 2000, platform="esp32c6", project="sensor-fw"))
    assert info.to_json() == {
        "chip": "esp32c6", "chip_name": "ESP32-C6", "segments": 1, "flash_mode": "dio", "flash_size": "4MB",
        "flash_freq": "80m", "length": 2000, "sha256_appended": True, "gzip": False,
        "app": {"project_name": "sensor-fw", "version": "1.0.0", "idf_version": "v5.1-tinyota-test",
                "secure_version": 0, "compiled": ""},
    }
    assert describe(make_test_image("1.0.0", 2000)).to_json()["app"] is None


def test_the_one_line_summary() -> None:
    app = AppDescriptor(project_name="sensor-fw", version="1.1.0", idf_version="v5.1", secure_version=0, compiled="")
    esp32 = ImageInfo("esp32", 2, "dio", "4MB", "40m", 100, sha256_appended=True, app=app)
    assert esp32.summary() == "ESP32, DIO 4MB, 2 seg, sensor-fw 1.1.0 (IDF v5.1)"
    bare = AppDescriptor(project_name="", version="1.1.0", idf_version="", secure_version=0, compiled="")
    assert ImageInfo("esp32c3", 1, "qio", "8MB", "80m", 100, app=bare).summary() == "ESP32-C3, QIO 8MB, 1 seg, 1.1.0"
    assert ImageInfo("esp8266", 1, "dout", "1MB", "40m", 100, gzip=True).summary() == "ESP8266 (gzip), DOUT 1MB, 1 seg"
    empty = AppDescriptor(project_name="", version="", idf_version="", secure_version=0, compiled="")
    assert ImageInfo("esp32", 1, "dio", "4MB", "40m", 100, app=empty).summary() == "ESP32, DIO 4MB, 1 seg"


def test_kind_tells_an_image_start_from_anything_else() -> None:
    assert [image.kind(h) for h in (b"\xe9", b"\xe9\x00", b"\x1f\x8b", b"\x1f\x8b\x08", b"\x1f", b"", b"\x8b\x1f")] \
        == ["esp", "esp", "gzip", "gzip", None, None, None]
