"""HTTP Basic credentials (RFC 7617) parsed without ever raising on hostile input."""

from __future__ import annotations

import base64
import binascii

MAX_HEADER = 1024  # a device id and password fit many times over; longer is an attack or a bug


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """(user, password) from an ``Authorization: Basic …`` value, or None if it is not usable.

    None covers every malformed case (missing, wrong scheme, bad base64, not UTF-8, no colon,
    empty user): the caller answers 401 for all of them, never 500.
    """
    if not header or len(header) > MAX_HEADER:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        return None
    try:
        raw = base64.b64decode(token.strip(), validate=True)
        text = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, colon, password = text.partition(":")
    if not colon or not user:
        return None
    return user, password


def basic_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
