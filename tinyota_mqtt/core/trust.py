"""What a device may believe about an announcement: the Python twin of esp_client's checks.

Anyone who may publish on the broker can write ``<prefix>/<device>/update``, and a device sends its
own password with the download. So a device downloads only from URLs under the server base URL it
was built with (esp_client/src/tinyota/server_url.h): same scheme, host and port (a missing port
is the scheme's default) and a path that continues the base's path at a segment boundary. Parsed
parts are compared, never string prefixes: ``http://ota.lan:8000@evil/`` and ``http://ota.lan.evil/``
start like ``http://ota.lan`` but name other hosts.

The refusal texts are the device's, word for word, so the server shows the same reason whichever
kind of device refused.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, urlsplit

NOT_OUR_SERVER = 'refused: "url" is not under the server this device was built for; nothing was requested'
MISSING_SIGNATURE = 'refused: no "sig"; this device only acts on signed announcements'
BAD_SIGNATURE = 'refused: "sig" does not verify with this device\'s public key'

_DEFAULT_PORTS = {"http": 80, "https": 443}
_VISIBLE_ASCII = re.compile(r"^[\x21-\x7e]+$")
_HOST = re.compile(r"^[A-Za-z0-9._-]+$")
_IPV6 = re.compile(r"^[0-9A-Fa-f:.]+$")
_ENCODED_SEPARATOR = re.compile(r"%(?:2[eEfF]|5[cC])")


def _parse(url: str) -> tuple[str, str, int, str] | None:
    """(scheme, host in lower case, port, path) of a URL a device could fetch, or None."""
    if not _VISIBLE_ASCII.fullmatch(url) or not (url.startswith("http://") or url.startswith("https://")):
        return None  # lower-case schemes only, like the ESP cores' HTTPClient
    try:
        parts: SplitResult = urlsplit(url)
    except ValueError:
        return None  # an unclosed "[" or a bracketed host that is no IP address: nothing to fetch
    authority = parts.netloc
    if "@" in authority or "\\" in url:
        return None  # user info is never ours; a backslash is a path separator to some servers
    port_text: str | None
    if authority.startswith("["):
        close = authority.find("]")
        host, rest = authority[1:close], authority[close + 1:]
        if close < 0 or not _IPV6.fullmatch(host) or (rest and not rest.startswith(":")):
            return None
        port_text = rest[1:] if rest else None
    else:
        host, colon, after = authority.partition(":")
        port_text = after if colon else None
        if not _HOST.fullmatch(host):
            return None
    if port_text is None:
        port = _DEFAULT_PORTS[parts.scheme]
    elif port_text.isdigit() and len(port_text) <= 5 and 1 <= int(port_text) <= 65535:
        port = int(port_text)
    else:
        return None
    path = parts.path or "/"
    if _ENCODED_SEPARATOR.search(path) or any(seg in (".", "..") for seg in path.split("/")):
        return None
    return parts.scheme, host.lower(), port, path


def is_usable_base(base: str) -> bool:
    return _parse(base) is not None and "?" not in base and "#" not in base


def is_under_base(url: str, base: str) -> bool:
    want, got = _parse(base), _parse(url)
    if want is None or got is None or not is_usable_base(base):
        return False
    if want[:3] != got[:3]:
        return False
    prefix = want[3].rstrip("/")
    path = got[3]
    return path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/")
