"""Semantic Versioning 2.0.0: parsing and precedence (semver.org, section 11).

Releases order by precedence, so "the latest release" means the highest version, not the newest
file. Build metadata (``+…``) is kept for display but ignored when ordering, as the spec says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import total_ordering

from tinyota_mqtt.errors import TinyOTAError

_NUM = r"0|[1-9]\d*"
_IDENT = r"(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)"
_PATTERN = re.compile(
    rf"^(?P<major>{_NUM})\.(?P<minor>{_NUM})\.(?P<patch>{_NUM})"
    rf"(?:-(?P<pre>{_IDENT}(?:\.{_IDENT})*))?"
    r"(?:\+(?P<build>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)
# The device keeps a version in a 32-character buffer (esp_client/limits.json, kMaxVersionLen): a
# longer one would be released here and refused by every device, so the server refuses it first.
MAX_LENGTH = 32


class VersionError(TinyOTAError):
    pass


@total_ordering
@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int
    pre: tuple[int | str, ...] = ()
    build: str = field(default="", compare=False)
    text: str = field(default="", compare=False)

    def __str__(self) -> str:
        return self.text

    def _key(self) -> tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]:
        # A release (no pre-release part) outranks any of its pre-releases; numeric identifiers
        # rank below alphanumeric ones; then compare field by field (semver 11.4).
        pre = tuple((0, p) if isinstance(p, int) else (1, p) for p in self.pre)
        return (self.major, self.minor, self.patch, 0 if self.pre else 1, pre)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


def parse(text: str) -> Version:
    if not isinstance(text, str) or len(text) > MAX_LENGTH:
        raise VersionError(f"version {text!r} is too long", f"keep it under {MAX_LENGTH} characters")
    match = _PATTERN.fullmatch(text)
    if match is None:
        hint = "use MAJOR.MINOR.PATCH, e.g. 1.4.0 or 1.4.0-rc.1"
        if text[:1] in "vV" and _PATTERN.fullmatch(text[1:]):
            hint = f"drop the leading 'v': {text[1:]}"
        raise VersionError(f"{text!r} is not a semantic version", hint)
    pre = tuple(int(p) if p.isdigit() else p for p in (match["pre"] or "").split(".") if p)
    return Version(
        int(match["major"]), int(match["minor"]), int(match["patch"]), pre, match["build"] or "", text
    )


def is_valid(text: str) -> bool:
    try:
        parse(text)
    except VersionError:
        return False
    return True
