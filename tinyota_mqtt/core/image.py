"""What an ESP firmware image is built for, whether it is whole, and the version it carries.

A release is checked here before any device downloads it: an image for another chip bricks the
board it is flashed into, and a truncated one is refused by the bootloader only after a full
download. The layout, as documented in ESP-IDF's "App Image Format" page and
``components/bootloader_support/include/esp_app_format.h`` / ``esp_app_desc.h``, and as
esptool's ``esptool/bin_image.py`` reads it (little-endian throughout):

* common header, 8 bytes: magic ``0xE9``, segment count, SPI flash mode, one byte with the flash
  size in the high nibble and the flash frequency in the low one, entry address (u32).
* ESP32 family only, an extended header of 16 more bytes: WP pin, three bytes of SPI pin drive
  strengths, chip id (u16), legacy min revision (u8), min and max revision (u16 each), four
  reserved bytes, and ``hash_appended`` (0 or 1). The ESP8266 has no extended header.
* ``segment count`` segments, each an 8-byte header (load address, data length) and the data. At
  most 16 (``ESP_IMAGE_MAX_SEGMENTS``).
* zero padding, then one checksum byte placed so the image so far is a multiple of 16 bytes: the
  XOR of every segment data byte, seeded with ``0xEF``.
* if ``hash_appended`` is 1, the SHA-256 of everything before it (header to checksum byte).

Anything after that is tolerated: the Arduino ESP8266 core's .bin is its eboot bootloader image
padded to 4 KiB with the app image behind it (``tools/elf2bin.py``), and a signed ESP32 image
carries its signature block after the digest.

On the ESP32 family the app descriptor (``esp_app_desc_t``, 256 bytes, magic ``0xABCD5432``)
opens the first segment of an ESP-IDF or arduino-esp32 app: secure version, version, project
name, compile time and date, IDF version.

The ESP8266 Arduino core (3.x) also flashes a gzip-compressed image, which its eboot inflates;
no ESP32 core does. Arduino's ``Updater`` refuses any other first byte, so the ESP8266 SDK's
"v2" format (magic ``0xEA``) is refused here too.
"""

from __future__ import annotations

import hashlib
import mmap
import struct
import zlib
from dataclasses import dataclass
from typing import Any

ESP_MAGIC = 0xE9
ESP8266_V2_MAGIC = 0xEA
GZIP_MAGIC = b"\x1f\x8b"
APP_DESC_MAGIC = 0xABCD5432
VERSION_MARKER = b"TINYOTA_FW_VERSION="  # esp_client embeds this, followed by the version and NUL
_MAX_VERSION = 64

_COMMON = 8
_EXTENDED = 16
_SEGMENT_HEADER = 8
_MAX_SEGMENTS = 16
_CHECKSUM_SEED = 0xEF
_DIGEST = 32
_APP_DESC = 256
# An ESP8266 app is at most 1 MiB of mapped flash; a gzip that inflates past this is not one.
MAX_INFLATED = 4 * 1024 * 1024

# The extended header's chip id (esptool's IMAGE_CHIP_ID per target, esp_app_format.h's
# esp_chip_id_t) and the platform name config.yaml uses for it.
CHIP_IDS = {
    0: "esp32", 2: "esp32s2", 5: "esp32c3", 9: "esp32s3", 12: "esp32c2", 13: "esp32c6",
    16: "esp32h2", 18: "esp32p4", 20: "esp32c61", 23: "esp32c5",
}
CHIP_NAMES = {
    "esp8266": "ESP8266", "esp32": "ESP32", "esp32s2": "ESP32-S2", "esp32s3": "ESP32-S3",
    "esp32c2": "ESP32-C2", "esp32c3": "ESP32-C3", "esp32c5": "ESP32-C5", "esp32c6": "ESP32-C6",
    "esp32c61": "ESP32-C61", "esp32h2": "ESP32-H2", "esp32p4": "ESP32-P4",
}
PLATFORMS = tuple(CHIP_NAMES)  # every chip this module can tell apart, config's platform values

FLASH_MODES = ("qio", "qout", "dio", "dout", "fast_read", "slow_read")  # esp_image_spi_mode_t
# High nibble of byte 3. The ESP32 family shares one table (esp_image_flash_size_t); the ESP8266
# has its own (esptool targets/esp8266.py, FLASH_SIZES), including the "-c1" layouts.
_ESP32_FLASH_SIZES = ("1MB", "2MB", "4MB", "8MB", "16MB", "32MB", "64MB", "128MB")
_ESP8266_FLASH_SIZES = {0: "512KB", 1: "256KB", 2: "1MB", 3: "2MB", 4: "4MB", 5: "2MB-c1", 6: "4MB-c1",
                        8: "8MB", 9: "16MB"}
# Low nibble of byte 3: the SPI clock, whose meaning depends on the chip (esptool FLASH_FREQUENCY).
_CLASSIC_FREQ = {0x0: "40m", 0x1: "26m", 0x2: "20m", 0xF: "80m"}
_FLASH_FREQS: dict[str, dict[int, str]] = {
    "esp8266": _CLASSIC_FREQ, "esp32": _CLASSIC_FREQ, "esp32s2": _CLASSIC_FREQ, "esp32s3": _CLASSIC_FREQ,
    "esp32c3": _CLASSIC_FREQ, "esp32p4": _CLASSIC_FREQ,
    "esp32c2": {0x0: "30m", 0x1: "20m", 0x2: "15m", 0xF: "60m"},
    "esp32c6": {0x0: "80m", 0x2: "20m"},  # 40m and 80m are both written as 0 on the C6 (a ROM quirk)
    "esp32c5": {0x0: "40m", 0x2: "20m", 0xF: "80m"}, "esp32c61": {0x0: "40m", 0x2: "20m", 0xF: "80m"},
    "esp32h2": {0x0: "24m", 0x1: "16m", 0x2: "12m", 0xF: "48m"},
}

# Where each chip maps flash data (esptool DROM_MAP_START): the app descriptor's segment loads here.
_DROM = {"esp32": 0x3F400000, "esp32s2": 0x3F000000, "esp32s3": 0x3C000000, "esp32c2": 0x3C000000,
         "esp32c3": 0x3C000000, "esp32c5": 0x42000000, "esp32c6": 0x42800000, "esp32c61": 0x42800000,
         "esp32h2": 0x42800000, "esp32p4": 0x40000000}

# bytes, or a read-only map of the file: the store parses an upload in place.
Buffer = bytes | bytearray | mmap.mmap


class BadImage(ValueError):
    """The file is not a whole ESP app image. ``hint`` says what to do about it."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


@dataclass(frozen=True)
class AppDescriptor:
    """``esp_app_desc_t``: what ESP-IDF (and so arduino-esp32) records about the app it built."""

    project_name: str
    version: str
    idf_version: str
    secure_version: int
    compiled: str  # "Mar  1 2026 12:00:00", or "" when the build left the date out

    def to_json(self) -> dict[str, Any]:
        return {"project_name": self.project_name, "version": self.version, "idf_version": self.idf_version,
                "secure_version": self.secure_version, "compiled": self.compiled}


@dataclass(frozen=True)
class ImageInfo:
    """What the image's headers say. Stored with the release and shown beside it."""

    chip: str  # a platform name ("esp8266", "esp32s3", …), or "chip id N" for one we do not know
    segments: int
    flash_mode: str
    flash_size: str
    flash_freq: str
    length: int  # bytes from the header to the checksum (and digest); the file may hold more
    sha256_appended: bool = False
    gzip: bool = False
    app: AppDescriptor | None = None

    @property
    def chip_name(self) -> str:
        return CHIP_NAMES.get(self.chip, self.chip)

    def to_json(self) -> dict[str, Any]:
        return {"chip": self.chip, "chip_name": self.chip_name, "segments": self.segments,
                "flash_mode": self.flash_mode, "flash_size": self.flash_size, "flash_freq": self.flash_freq,
                "length": self.length, "sha256_appended": self.sha256_appended, "gzip": self.gzip,
                "app": self.app.to_json() if self.app else None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImageInfo:
        app = data.get("app")
        return cls(chip=str(data["chip"]), segments=int(data["segments"]), flash_mode=str(data["flash_mode"]),
                   flash_size=str(data["flash_size"]), flash_freq=str(data["flash_freq"]),
                   length=int(data["length"]), sha256_appended=bool(data.get("sha256_appended")),
                   gzip=bool(data.get("gzip")), app=AppDescriptor(**app) if isinstance(app, dict) else None)

    def summary(self) -> str:
        """One line for tables: chip, flash, and the app descriptor when there is one."""
        parts = [self.chip_name + (" (gzip)" if self.gzip else ""),
                 f"{self.flash_mode.upper()} {self.flash_size}", f"{self.segments} seg"]
        if self.app is not None:
            parts.append(" ".join(p for p in (self.app.project_name, self.app.version) if p)
                         + (f" (IDF {self.app.idf_version})" if self.app.idf_version else ""))
        return ", ".join(p for p in parts if p)


def family(platform: str) -> str:
    """'esp8266' or 'esp32' (every chip with the extended header)."""
    return "esp8266" if platform == "esp8266" else "esp32"


def kind(head: bytes) -> str | None:
    """'esp' or 'gzip' for a plausible image start, else None."""
    if head[:1] == bytes([ESP_MAGIC]):
        return "esp"
    if head[:2] == GZIP_MAGIC:
        return "gzip"
    return None


# -- parsing ---------------------------------------------------------------------------------------

def _xor(data: Buffer, seed: int) -> int:
    """XOR of every byte, seeded. Folds a big integer in halves, so 16 MiB takes milliseconds."""
    value = seed
    step = 1 << 20  # bounded temporaries: fold a MiB at a time
    for start in range(0, len(data), step):
        chunk = data[start:start + step]
        n, width = int.from_bytes(chunk, "little"), len(chunk)
        while width > 1:
            half = width // 2
            n = (n & ((1 << (8 * half)) - 1)) ^ (n >> (8 * half))
            width -= half
        value ^= n & 0xFF
    return value


def _text(raw: bytes) -> str:
    """A NUL-padded char[] field, as text we can show (non-printable bytes replaced)."""
    text = raw.split(b"\x00", 1)[0].decode("utf-8", "replace")
    return "".join(c if c.isprintable() else "?" for c in text)


def _app_descriptor(data: Buffer, at: int, length: int) -> AppDescriptor | None:
    """esp_app_desc_t at the start of the first segment's data, if that is what is there."""
    if length < _APP_DESC:
        return None
    raw = bytes(data[at:at + _APP_DESC])
    magic, secure_version = struct.unpack_from("<II", raw, 0)
    if magic != APP_DESC_MAGIC:
        return None
    # magic, secure_version, reserv1[2], version[32], project_name[32], time[16], date[16],
    # idf_ver[32], app_elf_sha256[32], … (esp_app_desc.h)
    version, project, time, date, idf = struct.unpack_from("<32s32s16s16s32s", raw, 16)
    compiled = " ".join(p for p in (_text(date), _text(time)) if p)
    return AppDescriptor(project_name=_text(project), version=_text(version), idf_version=_text(idf),
                         secure_version=secure_version, compiled=compiled)


def _parse(data: Buffer, extended: bool) -> ImageInfo:
    """One layout, strictly. Raises BadImage naming the first thing that does not hold."""
    size = len(data)
    header = _COMMON + (_EXTENDED if extended else 0)
    if size < header:
        raise BadImage(f"the image ends after {size} bytes, inside its {header}-byte header")
    count, mode, size_freq = data[1], data[2], data[3]  # describe() has checked the magic byte
    if extended:
        chip_id = int.from_bytes(data[12:14], "little")
        chip = CHIP_IDS.get(chip_id, f"chip id {chip_id}")
        if data[23] not in (0, 1):
            raise BadImage(f"the extended header's hash_appended byte is {data[23]}, not 0 or 1")
        digest = data[23] == 1
    else:
        chip, digest = "esp8266", False
    if not 1 <= count <= _MAX_SEGMENTS:
        raise BadImage(f"the header declares {count} segments (an app image has 1 to {_MAX_SEGMENTS})")
    at, checksum, app = header, _CHECKSUM_SEED, None
    for index in range(count):
        if at + _SEGMENT_HEADER > size:
            raise BadImage(f"the image is truncated: it ends inside the header of segment {index + 1} of {count}")
        length = int.from_bytes(data[at + 4:at + 8], "little")
        at += _SEGMENT_HEADER
        if at + length > size:
            raise BadImage(f"the image is truncated: segment {index + 1} of {count} declares {length} bytes "
                           f"but only {size - at} follow")
        if index == 0 and extended:
            app = _app_descriptor(data, at, length)
        checksum = _xor(data[at:at + length], checksum)
        at += length
    at += 15 - at % 16  # the checksum byte ends a 16-byte block
    if at >= size:
        raise BadImage("the image is truncated: it ends before its checksum byte")
    if data[at] != checksum:
        raise BadImage(f"the image is corrupt: its checksum byte is 0x{data[at]:02x} but its segments "
                       f"add up to 0x{checksum:02x}")
    at += 1
    if digest:
        if at + _DIGEST > size:
            raise BadImage("the image is truncated: its header says a SHA-256 digest follows the checksum, "
                           "but the file ends first")
        if hashlib.sha256(data[:at]).digest() != bytes(data[at:at + _DIGEST]):
            raise BadImage("the image is corrupt: its appended SHA-256 does not match its contents")
        at += _DIGEST
    if family(chip) == "esp8266":
        flash_size = _ESP8266_FLASH_SIZES.get(size_freq >> 4)
    else:
        flash_size = _ESP32_FLASH_SIZES[size_freq >> 4] if size_freq >> 4 < len(_ESP32_FLASH_SIZES) else None
    return ImageInfo(
        chip=chip, segments=count,
        flash_mode=FLASH_MODES[mode] if mode < len(FLASH_MODES) else f"0x{mode:02x}",
        flash_size=flash_size or f"0x{size_freq >> 4:x}",
        flash_freq=_FLASH_FREQS.get(chip, {}).get(size_freq & 0xF, f"0x{size_freq & 0xF:x}"),
        length=at, sha256_appended=digest, app=app,
    )


def _looks_extended(data: Buffer) -> bool:
    """Whether bytes 8..24 look like an ESP32-family extended header, for choosing which of two
    failed readings to report: its chip id is one we know (esptool's image_info guesses alike)."""
    return len(data) >= _COMMON + _EXTENDED and int.from_bytes(data[12:14], "little") in CHIP_IDS


def _inflate(data: Buffer) -> bytes:
    inflater = zlib.decompressobj(wbits=31)  # gzip wrapper: its CRC-32 and length are checked too
    try:
        out = inflater.decompress(data, MAX_INFLATED + 1)
    except zlib.error as exc:
        raise BadImage(f"the gzip stream is corrupt ({exc})") from None
    if len(out) > MAX_INFLATED:
        raise BadImage(f"the gzip inflates past {MAX_INFLATED // (1024 * 1024)} MiB, more than an ESP8266 "
                       "app can be")
    if not inflater.eof:
        raise BadImage("the gzip stream is truncated")
    return out


def describe(data: Buffer) -> ImageInfo:
    """Parse a whole image file and check it is whole. Raises BadImage otherwise.

    ESP8266 and ESP32 images share the magic byte; the ESP32 reading (extended header) is tried
    first, as esptool does, and only a layout whose segments, checksum and digest all hold is
    taken: the odds that an image of one family also passes as the other are negligible.
    """
    if len(data) == 0:
        raise BadImage("the firmware file is empty")
    if bytes(data[:2]) == GZIP_MAGIC:
        inflated = _inflate(data)
        try:
            inner = describe(inflated)
        except BadImage as exc:
            raise BadImage(f"inside the gzip: {exc.message}", exc.hint) from None
        if family(inner.chip) != "esp8266":
            raise BadImage(f"this gzip holds an {inner.chip_name} image; only the ESP8266 core flashes "
                           "gzip-compressed images", "release the uncompressed .bin for an ESP32")
        return ImageInfo(**{**inner.__dict__, "gzip": True})
    if data[0] == ESP8266_V2_MAGIC:
        raise BadImage("this is an ESP8266 SDK \"v2\" image (first byte 0xea); ESP8266httpUpdate flashes only "
                       "images that start with 0xe9", "build it with the Arduino ESP8266 core's elf2bin")
    if data[0] != ESP_MAGIC:
        raise BadImage(f"this is not an ESP firmware image (first byte 0x{data[0]:02x}, expected 0xe9, "
                       "or gzip 1f 8b)", "release the .bin the build produced (not the .elf)")
    try:
        return _parse(data, extended=True)
    except BadImage as as_esp32:
        try:
            return _parse(data, extended=False)
        except BadImage as as_esp8266:
            raise (as_esp32 if _looks_extended(data) else as_esp8266) from None


def chip_mismatch(info: ImageInfo, platform: str, image: str = "this image") -> str | None:
    """Why a file must not be released as ``image``, configured for ``platform``; None if it fits."""
    if info.chip == platform:
        return None
    return (f"this firmware is built for the {info.chip_name}, but {image} is configured for the "
            f"{CHIP_NAMES.get(platform, platform)} (platform: {platform})")


# -- the version an esp_client image declares ----------------------------------------------------

def find_version(data: bytes) -> str | None:
    """The version an esp_client image declares about itself, if the marker is present.

    The marker's prefix can also occur on its own (a string table, the code that searches for
    it), so a copy not followed by a plausible version and a NUL is skipped, not taken.
    """
    at = data.find(VERSION_MARKER)
    while at >= 0:
        start = at + len(VERSION_MARKER)
        end = data.find(b"\x00", start, start + _MAX_VERSION + 1)
        if end > start:
            try:
                return data[start:end].decode("ascii")
            except UnicodeDecodeError:
                pass
        at = data.find(VERSION_MARKER, start)
    return None


# -- test images -----------------------------------------------------------------------------------

def make_test_image(version: str, size: int = 4096, *, fill: bytes = b"\xff", platform: str = "esp8266",
                    project: str = "tinyota-test") -> bytes:
    """A small but valid app image for ``platform``, exactly ``size`` bytes. For demos and tests.

    One segment holding (on the ESP32 family) an app descriptor, the esp_client version marker,
    then ``fill`` repeated; the checksum, and on the ESP32 family the SHA-256 digest, are real.
    Whatever ``size`` leaves after the image is more ``fill`` (tolerated, as on real images).
    Flash settings: DIO, 4 MB, 40 MHz, which the simulated devices accept.
    """
    extended = family(platform) == "esp32"
    pattern = fill or b"\xff"
    marker = VERSION_MARKER + version.encode("ascii") + b"\x00"
    if extended:
        chip_id = next((i for i, name in CHIP_IDS.items() if name == platform), None)
        if chip_id is None:
            raise ValueError(f"no chip id known for platform {platform!r}")
        # WP pin disabled (0xEE), drive strengths 0, chip id, revisions 0, reserved, hash appended.
        header = struct.pack("<BBBBI", ESP_MAGIC, 1, 2, 0x20, 0x40080000)  # DIO; 4MB, 40m
        header += struct.pack("<BBBBHBHH4xB", 0xEE, 0, 0, 0, chip_id, 0, 0, 0, 1)
        desc = struct.pack("<II8x32s32s16s16s32s", APP_DESC_MAGIC, 0, version.encode("ascii"),
                           project.encode("ascii"), b"", b"", b"v5.1-tinyota-test")
        head = desc + bytes(_APP_DESC - len(desc)) + marker
        load, digest = _DROM[platform] + 0x20, _DIGEST  # every chip with an id has its DROM here
    else:
        header = struct.pack("<BBBBI", ESP_MAGIC, 1, 2, 0x40, 0x40100000)  # DIO; 4MB, 40m
        head, load, digest = marker, 0x3FFE8000, 0
    # The longest segment (a multiple of 4) that leaves the checksum byte ending a 16-byte block
    # within size: header + segment header + data + padding + checksum, then the digest.
    prefix = len(header) + _SEGMENT_HEADER
    seg_len = ((size - digest) // 16 * 16 - prefix - 1) // 4 * 4
    if seg_len < len(head):
        raise ValueError(f"size {size} is too small for a {platform} test image")
    body = head + (pattern * ((seg_len - len(head)) // len(pattern) + 1))[: seg_len - len(head)]
    image = bytearray(header + struct.pack("<II", load, len(body)) + body)
    image += bytes(15 - len(image) % 16)
    image.append(_xor(body, _CHECKSUM_SEED))
    if extended:
        image += hashlib.sha256(image).digest()
    rest = size - len(image)
    image += (pattern * (rest // len(pattern) + 1))[:rest]
    return bytes(image)
