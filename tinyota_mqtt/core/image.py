"""What an ESP firmware image looks like, and the version it carries.

The ESP8266 and ESP32 bootloaders both start an app image with the magic byte 0xE9; the ESP8266
core also accepts a gzip-compressed image (0x1f 0x8b), which ESP8266httpUpdate checks for before
flashing. Anything else would be refused by the device after a full download, so we refuse it
at release time.
"""

from __future__ import annotations

ESP_MAGIC = 0xE9
GZIP_MAGIC = b"\x1f\x8b"
VERSION_MARKER = b"TINYOTA_FW_VERSION="  # esp_client embeds this, followed by the version and NUL
_MAX_VERSION = 64


def kind(head: bytes) -> str | None:
    """'esp' or 'gzip' for a plausible image start, else None."""
    if head[:1] == bytes([ESP_MAGIC]):
        return "esp"
    if head[:2] == GZIP_MAGIC:
        return "gzip"
    return None


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


def make_test_image(version: str, size: int = 4096, *, fill: bytes = b"\xff") -> bytes:
    """A fake but well-formed image: magic byte, version marker, padding. For demos and tests."""
    body = bytes([ESP_MAGIC, 0x03, 0x02, 0x40]) + VERSION_MARKER + version.encode("ascii") + b"\x00"
    if size < len(body):
        raise ValueError(f"size {size} is too small for the header ({len(body)} bytes)")
    pattern = (fill * (size // max(len(fill), 1) + 1))[: size - len(body)]
    return body + pattern
