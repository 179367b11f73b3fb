"""Download tokens for devices that can carry no credential but the URL (Tasmota), as pure rules.

A token is minted for one attempt: one device, one release, and (for the two-step ESP8266
upgrade) that release's minimal companion. It is valid until the attempt ends or its TTL runs
out, whichever is first, and each file may be taken whole once: the full image once, the minimal
image once. A request that only *probes* the full image while the device has too little room
for it (the first step of Tasmota's two-step upgrade: it reads the headers, sees the size and
asks for the minimal variant instead) does not spend it.

Nothing here sees the token itself: the store keeps only its SHA-256 (see fleet/tokens.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

FULL, MINIMAL = "full", "minimal"
TTL = 15 * 60.0  # seconds; enough for a two-step upgrade (two downloads and two reboots)
TOKEN_BYTES = 16  # 128 bits from `secrets`
TOKEN_CHARS = 22  # token_urlsafe(16) is 22 characters
SHOWN_CHARS = 4  # what a log line may show of a token
_IN_URL = re.compile(rf"(/t/[A-Za-z0-9_-]+/)([A-Za-z0-9_-]{{{SHOWN_CHARS}}})[A-Za-z0-9_-]*")


@dataclass(frozen=True)
class Grant:
    device: str
    image: str
    version: str
    sha256: str
    attempt: str
    expires: float
    minimal_image: str | None = None
    minimal_version: str | None = None
    served: frozenset[str] = frozenset()  # the files taken whole already
    revoked: str | None = None  # why it ended early (the attempt ended, a new one began)


def refusal(grant: Grant | None, device: str, variant: str, now: float) -> str | None:
    """Why this request may not use the token, or None when it may. The wording goes to logs
    and to the device as the reason phrase, never with the token in it."""
    if grant is None:
        return "unknown download token"
    if grant.device != device:
        return f"the token is not {device}'s"
    if grant.revoked is not None:
        return f"the token was revoked ({grant.revoked})"
    if now >= grant.expires:
        return "the token expired"
    if variant == MINIMAL and grant.minimal_image is None:
        return "no minimal image is released for this update"
    if variant in grant.served:
        return f"the token was used already for the {variant} image"
    return None


def spends(variant: str, size: int, free_space: int | None) -> bool:
    """Whether serving ``variant`` whole counts as its one use. The full image asked for by a
    device that cannot hold it is the first step of the two-step upgrade, not a use."""
    return not (variant == FULL and free_space is not None and free_space < size)


def served(grant: Grant, variant: str) -> Grant:
    return replace(grant, served=grant.served | {variant})


def revoked(grant: Grant, why: str) -> Grant:
    return grant if grant.revoked is not None else replace(grant, revoked=why)


def mask(token: str) -> str:
    """A token as a log line may show it: its first few characters and an ellipsis."""
    return token[:SHOWN_CHARS] + "…"


def mask_path(path: str) -> str:
    """``/t/<device>/<token>/<file>`` with the token masked; other paths unchanged."""
    parts = path.split("/")
    if len(parts) >= 4 and parts[1] == "t":
        parts[3] = mask(parts[3])
    return "/".join(parts)


def mask_text(text: str, token: str) -> str:
    return text.replace(token, mask(token)) if token else text


def mask_urls(text: str) -> str:
    """Every token URL in ``text`` (a device's echo of its OtaUrl, say) with the token masked."""
    return _IN_URL.sub(lambda m: m[1] + m[2] + "…", text)
