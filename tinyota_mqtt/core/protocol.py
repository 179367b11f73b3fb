"""The MQTT contract as pure functions: topic names, and payloads built and parsed.

See docs/protocol.md for the table. Parsers take raw bytes from the network and either return a
typed value or raise ``ProtocolError`` with a sentence fit for a log line; they never trust size,
type or encoding.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

DEVICE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
STATES = ("idle", "downloading", "flashing", "rebooting", "failed")
MAX_STATUS_BYTES = 1024  # a status is ~200 bytes; anything far bigger is a bug or a flood
MAX_TEXT = 256


class ProtocolError(ValueError):
    pass


@dataclass(frozen=True)
class Topics:
    prefix: str = "tinyota"

    def update(self, device: str) -> str:
        return f"{self.prefix}/{device}/update"

    def status(self, device: str) -> str:
        return f"{self.prefix}/{device}/status"

    def availability(self, device: str) -> str:
        return f"{self.prefix}/{device}/availability"

    def state(self, device: str) -> str:
        return f"{self.prefix}/{device}/state"

    def install(self, device: str) -> str:
        return f"{self.prefix}/{device}/install"

    @property
    def server_availability(self) -> str:
        return f"{self.prefix}/server/availability"

    @property
    def server_sync(self) -> str:
        """Where the server sends itself a marker after subscribing: when it comes back, every
        retained message the broker held for those subscriptions has been delivered before it."""
        return f"{self.prefix}/server/sync"

    def subscriptions(self) -> list[str]:
        """What devices say, and the server's own sync marker."""
        return [f"{self.prefix}/+/status", f"{self.prefix}/+/availability", f"{self.prefix}/+/install",
                self.server_sync]

    def guarded(self) -> list[str]:
        """The retained topics the server owns, watched to notice forgeries (fleet/guard.py)."""
        return [f"{self.prefix}/+/update", f"{self.prefix}/+/state", self.server_availability]

    def split(self, topic: str) -> tuple[str, str] | None:
        """(device, kind) for a topic under the prefix, e.g. ('kitchen-1', 'status')."""
        head = self.prefix + "/"
        if not topic.startswith(head):
            return None
        parts = topic[len(head):].split("/")
        if len(parts) != 2 or not DEVICE_ID.fullmatch(parts[0]) or parts[0] == "server":
            return None
        return parts[0], parts[1]


@dataclass(frozen=True)
class Announcement:
    id: str
    version: str
    url: str
    size: int
    md5: str
    sha256: str
    sig: str | None = None  # base64 ECDSA P-256 signature over manifest(), when the server signs
    image: str = ""   # sent, so a device can rebuild the manifest; the URL names it too
    device: str = ""  # signed but never sent: the device puts in its own id, so a replay elsewhere fails

    def manifest(self) -> bytes:
        """The bytes a signature covers: every field a device acts on, one per line.

        The device id and the attempt id are in it so a signature cannot be replayed to another
        device or attempt; every field is one line of visible ASCII (the device checks that), so
        the joined text is unambiguous.
        """
        fields = ("tinyota-announcement-v2", self.device, self.image, self.id, self.version, self.url,
                  str(self.size), self.md5, self.sha256)
        return "\n".join(fields).encode("utf-8")

    def payload(self) -> bytes:
        # Compact and key-ordered: it must fit the device's MQTT buffer, and equal announcements
        # must be byte-equal so re-publishing after a reconnect changes nothing.
        body: dict[str, Any] = {"id": self.id, "version": self.version, "url": self.url, "size": self.size,
                                "md5": self.md5, "sha256": self.sha256}
        if self.image:
            body["image"] = self.image
        if self.sig is not None:
            body["sig"] = self.sig
        return json.dumps(body, separators=(",", ":")).encode("utf-8")


def firmware_url(public_url: str, image: str, version: str) -> str:
    # No credentials here ever: the payload is retained on the broker for anyone subscribed.
    return f"{public_url.rstrip('/')}/fw/{image}/{version}.bin"


@dataclass(frozen=True)
class Status:
    state: str
    version: str | None = None
    progress: int | None = None
    id: str | None = None
    error: str | None = None
    platform: str | None = None
    free_space: int | None = None


def _text(body: dict[str, Any], key: str, limit: int = MAX_TEXT) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ProtocolError(f"'{key}' must be a string, got {type(value).__name__}")
    if len(value) > limit:
        raise ProtocolError(f"'{key}' is longer than {limit} characters")
    return value


def _int(body: dict[str, Any], key: str, low: int, high: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise ProtocolError(f"'{key}' must be a number, got {type(value).__name__}")
    if not low <= value <= high:
        raise ProtocolError(f"'{key}' must be between {low} and {high}, got {value}")
    return int(value)


def parse_status(raw: bytes) -> Status:
    if len(raw) > MAX_STATUS_BYTES:
        raise ProtocolError(f"status payload is {len(raw)} bytes, more than {MAX_STATUS_BYTES}")
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"status payload is not JSON: {str(exc)[:80]}") from None
    if not isinstance(body, dict):
        raise ProtocolError(f"status payload must be a JSON object, got {type(body).__name__}")
    state = _text(body, "state", 16)
    if state not in STATES:
        raise ProtocolError(f"'state' must be one of {', '.join(STATES)}, got {state!r}")
    return Status(
        state=state,
        version=_text(body, "version", 64),
        progress=_int(body, "progress", 0, 100),
        id=_text(body, "id", 64),
        error=_text(body, "error"),
        platform=_text(body, "platform", 16),
        free_space=_int(body, "free_space", 0, 2**40),
    )


def parse_availability(raw: bytes) -> bool:
    text = raw.strip().lower()
    if text == b"online":
        return True
    if text == b"offline":
        return False
    raise ProtocolError(f"availability must be 'online' or 'offline', got {raw[:40]!r}")


def parse_install(raw: bytes) -> str | None:
    """The install command: 'install' (latest), or a JSON {"version": "..."}; None means latest."""
    text = raw.strip()
    if text.lower() in (b"install", b""):
        return None
    if len(text) > MAX_TEXT:
        raise ProtocolError("install command is too long")
    try:
        body = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError(f"install command must be 'install' or JSON, got {text[:40]!r}") from None
    if not isinstance(body, dict) or not isinstance(body.get("version"), str):
        raise ProtocolError('install command JSON must look like {"version": "1.4.0"}')
    return str(body["version"])
