"""What ESP8266httpUpdate and arduino-esp32's HTTPUpdate tell us in their request headers.

Both cores send ``x-<CHIP>-…`` headers (``x-ESP8266-free-space``, ``x-ESP32-version``, …) with
``User-Agent: ESP8266-http-Update`` / ``ESP32-http-Update``. ``x-…-version`` is only sent when the
sketch passes a current version to ``update()``. Values are device-supplied text: parse, bound,
and report a bad one as a client error rather than trusting it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

_CHIPS = ("ESP8266", "ESP32")
_MAX_VALUE = 128


class BadEspHeader(ValueError):
    """A present but unusable x-ESP… header; the HTTP layer answers 400 with this message."""


@dataclass(frozen=True)
class EspRequest:
    platform: str | None = None  # "esp8266" / "esp32" when the request came from an ESP core
    version: str | None = None
    free_space: int | None = None
    sketch_size: int | None = None
    chip_size: int | None = None
    sta_mac: str | None = None
    sketch_md5: str | None = None
    mode: str | None = None  # "sketch" or "spiffs"


def _int(name: str, text: str | None) -> int | None:
    if text is None:
        return None
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 12:  # "²".isdigit() is True
        raise BadEspHeader(f"{name} must be a whole number of bytes, got {text[:40]!r}")
    return int(text)


def parse(get: Callable[[str], str | None]) -> EspRequest:
    """Read the headers through ``get`` (case-insensitive lookup, e.g. ``request.headers.get``)."""
    for chip in _CHIPS:
        prefix = f"x-{chip}-"
        fields = {k: get(prefix + k) for k in
                  ("version", "free-space", "sketch-size", "chip-size", "STA-MAC", "sketch-md5", "mode")}
        agent = get("User-Agent") or ""
        if not any(v is not None for v in fields.values()) and not agent.startswith(chip + "-"):
            continue
        for key, value in fields.items():
            if value is not None and len(value) > _MAX_VALUE:
                raise BadEspHeader(f"{prefix}{key} is longer than {_MAX_VALUE} characters")
        version = fields["version"]
        return EspRequest(
            platform=chip.lower(),
            version=version.strip() if version is not None and version.strip() else None,
            free_space=_int(prefix + "free-space", fields["free-space"]),
            sketch_size=_int(prefix + "sketch-size", fields["sketch-size"]),
            chip_size=_int(prefix + "chip-size", fields["chip-size"]),
            sta_mac=fields["STA-MAC"],
            sketch_md5=fields["sketch-md5"],
            mode=fields["mode"],
        )
    return EspRequest()
