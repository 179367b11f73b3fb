"""Tasmota's MQTT and OTA behaviour as pure functions: topics, the OtaUrl, and what its messages mean.

Written from Tasmota's own docs (tasmota.github.io: Commands, MQTT, Upgrading) and source
(``tasmota/tasmota_support/support_command.ino`` for ``CmndOtaUrl`` / ``CmndUpgrade`` / ``Status``,
``support_tasmota.ino`` ``Every250mSeconds`` for the upgrade loop, ``xdrv_02_mqtt.ino`` for LWT and
INFO1). What matters here:

* Topics are built from the device's FullTopic (default ``%prefix%/%topic%/``) with the prefixes
  ``cmnd``, ``stat`` and ``tele``; a command is ``cmnd/<topic>/<Command>`` with its parameter as
  the payload. Replies go to ``stat/<topic>/RESULT`` (or ``stat/<topic>/<COMMAND>`` with
  SetOption4 1), ``Status 2`` to ``stat/<topic>/STATUS2``; the last will is ``tele/<topic>/LWT``
  (``Online`` / ``Offline``, retained) and ``tele/<topic>/INFO1`` follows every boot.
* ``OtaUrl`` stores at most 100 characters (Commands docs; the upgrade copies it into a buffer
  of ``TOPSZ``); a ``%d`` or ``%04d`` in it is replaced by the chip id (``GetOtaUrl``).
* ``Upgrade 1`` answers ``{"Upgrade":"Version 14.3.0(tasmota) from <url>"}`` at once, then
  publishes ``{"Upgrade":"Successful. Restarting"}`` or ``{"Upgrade":"Failed <reason>"}`` on
  ``stat/<topic>/UPGRADE`` routing rules (RESULT unless SetOption4).
* On an ESP8266 whose free sketch space is smaller than the image (``HTTP_UE_TOO_LESS_SPACE``)
  Tasmota retries with the ``-minimal`` variant of the URL's file name, flashes that, reboots
  into it, and the minimal firmware downloads the OtaUrl again: the two-step upgrade.
* Versions read ``14.3.0(tasmota)``: the version, then the build's image name in brackets.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from tinyota_mqtt.core.protocol import ProtocolError

DEFAULT_FULL_TOPIC = "%prefix%/%topic%/"
PREFIXES = ("cmnd", "stat", "tele")
GROUP_TOPIC = "tasmotas"  # Tasmota's default GroupTopic (MQTT docs)
DISCOVERY_PREFIX = "tasmota/discovery"  # fixed in Tasmota (xdrv_12_discovery.ino)
OTAURL_LIMIT = 100  # characters OtaUrl keeps (Commands docs: "100 char limit")
# File names in our download URLs: Tasmota derives the minimal variant from the part after the
# last '/' (see minimal_url), and its Upgrading docs say a name must hold no '/', '-' or '.'.
FILE_STEM = "firmware"
MINIMAL_STEM = "firmware-minimal"
# Builds that are only a step on the way: the device runs them briefly between the two steps.
STEP_IMAGES = ("minimal", "safeboot")
MAX_PAYLOAD = 4096  # Tasmota's MQTT messages fit in its 1,200-byte buffer; this is generous
_VERSION = re.compile(r"\s*(?P<version>[0-9][0-9A-Za-z.+-]{0,63}?)\s*(?:\((?P<image>[^()]{0,64})\))?\s*")
_LEVEL = re.compile(r"[^/+#\x00]+")
_TOKEN = re.compile("%prefix%|%topic%")


@dataclass(frozen=True)
class Topics:
    """One Tasmota device's topics, from its FullTopic and Topic."""

    topic: str
    full_topic: str = DEFAULT_FULL_TOPIC

    def _base(self, prefix: str) -> str:
        text = self.full_topic.replace("%prefix%", prefix).replace("%topic%", self.topic)
        return text if text.endswith("/") else text + "/"

    def command(self, name: str) -> str:
        return self._base("cmnd") + name

    def stat(self, name: str) -> str:
        return self._base("stat") + name

    def tele(self, name: str) -> str:
        return self._base("tele") + name

    def subscriptions(self) -> list[str]:
        """What the server reads from the device: every stat and tele message."""
        return [self._base("stat") + "+", self._base("tele") + "+"]

    def split(self, topic: str) -> tuple[str, str] | None:
        """(prefix, name) for one of this device's stat/tele topics, e.g. ('stat', 'RESULT')."""
        for prefix in ("stat", "tele"):
            base = self._base(prefix)
            if topic.startswith(base) and "/" not in topic[len(base):] and topic[len(base):]:
                return prefix, topic[len(base):]
        return None


def full_topic_problem(text: str) -> str | None:
    """Why ``text`` is not a FullTopic this server can build topics from, or None."""
    if "%prefix%" not in text or "%topic%" not in text:
        return "must contain both %prefix% and %topic% (Tasmota's MQTT docs ask for both)"
    # One pass over the text: removing one token and then the other could join the halves of a
    # stray '%to' and 'pic%' around a %prefix% into a %topic% that is not there.
    if any("%" in part for part in _TOKEN.split(text)):
        return "only the %prefix% and %topic% tokens are supported here"
    if any(c in text for c in "+#\x00") or text.startswith("/"):
        return "must not contain MQTT wildcards or start with '/'"
    return None


def topic_problem(text: str) -> str | None:
    if not _LEVEL.fullmatch(text) or text != text.strip():
        return "must be one MQTT topic level: no '/', '+', '#' or surrounding spaces"
    return None


# -- the download URL ----------------------------------------------------------------------------

def download_url(public_url: str, device: str, token: str, *, gzip: bool) -> str:
    """Where a Tasmota device fetches its image: the single-use token is the only credential."""
    return f"{public_url.rstrip('/')}/t/{device}/{token}/{FILE_STEM}.bin{'.gz' if gzip else ''}"


def url_length(public_url: str, device: str, token_chars: int) -> int:
    """The longest OtaUrl ``download_url`` can make for this device (a gzipped image's)."""
    return len(download_url(public_url, device, "x" * token_chars, gzip=True))


def minimal_url(url: str) -> str:
    """The URL Tasmota asks for when the image does not fit its flash (ESP8266).

    Its upgrade loop takes the file name after the last '/', keeps its type from the first '.'
    on (``.bin.gz``), cuts the name at its last '-' (or at that '.'), and appends ``-minimal``
    and the type: ``…/firmware.bin.gz`` becomes ``…/firmware-minimal.bin.gz``.
    """
    slash = url.rfind("/")
    name_at = slash + 1 if slash >= 0 else 0
    name = url[name_at:]
    dot = name.find(".")
    kind = name[dot:] if dot >= 0 else ""
    stem = name[:dot] if dot >= 0 else name
    dash = stem.rfind("-")
    stem = stem[:dash] if dash >= 0 else stem
    return f"{url[:name_at]}{stem}-minimal{kind}"


# -- what the device says ------------------------------------------------------------------------

@dataclass(frozen=True)
class Version:
    version: str  # the part before the brackets, e.g. "14.3.0"
    image: str = ""  # the build in brackets, e.g. "tasmota", "tasmota-sensors", "minimal"

    @property
    def step(self) -> bool:
        """Only a step of an upgrade (the minimal or safeboot build), not what was asked for."""
        return any(self.image == name or self.image.endswith("-" + name) for name in STEP_IMAGES)


def parse_version(text: str) -> Version:
    match = _VERSION.fullmatch(text)
    if match is None:
        raise ProtocolError(f"not a Tasmota version string: {text[:40]!r}")
    return Version(match["version"], (match["image"] or "").strip())


@dataclass(frozen=True)
class Upgrade:
    """What an ``Upgrade`` reply says."""

    outcome: str  # "started", "restarting", "failed", "refused"
    detail: str = ""  # the failure reason in Tasmota's words, or the version it runs


def _json(payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError(f"payload is {len(payload)} bytes, more than {MAX_PAYLOAD}")
    try:
        body = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError("payload is not JSON") from None
    if not isinstance(body, dict):
        raise ProtocolError("payload is not a JSON object")
    return body


def parse_upgrade(text: str) -> Upgrade:
    """The text of ``{"Upgrade": "..."}`` (support_command.ino, support_tasmota.ino)."""
    if text.startswith("Version "):
        return Upgrade("started", text[len("Version "):].split(" from ", 1)[0].strip())
    if text.startswith("Successful"):
        return Upgrade("restarting")
    if text.startswith("Failed"):
        return Upgrade("failed", text[len("Failed"):].strip() or "no reason given")
    if text.startswith("1 or >"):  # D_JSON_ONE_OR_GT: the parameter was not 1 or a newer version
        return Upgrade("refused", text)
    raise ProtocolError(f"unknown Upgrade reply {text[:40]!r}")


def reply(payload: bytes) -> dict[str, Any]:
    """A RESULT / %COMMAND% / STATUS2 / INFO1 payload: one JSON object."""
    return _json(payload)


def upgrade_of(body: dict[str, Any]) -> Upgrade | None:
    value = body.get("Upgrade", body.get("Upload"))
    if value is None:
        return None
    if not isinstance(value, str):
        raise ProtocolError("'Upgrade' is not a string")
    return parse_upgrade(value[:256])


def version_of(body: dict[str, Any]) -> Version | None:
    """The running version from INFO1 (``{"Info1":{"Version":…}}``, or unwrapped before 9.x) or
    STATUS2 (``{"StatusFWR":{"Version":…}}``)."""
    for outer in ("Info1", "StatusFWR"):
        inner = body.get(outer)
        if isinstance(inner, dict):
            body = inner
            break
    value = body.get("Version")
    if value is None:
        return None
    if not isinstance(value, str):
        raise ProtocolError("'Version' is not a string")
    return parse_version(value)


def parse_lwt(payload: bytes, online: str = "Online", offline: str = "Offline") -> bool:
    text = payload.decode("utf-8", "replace").strip()
    if text == online:
        return True
    if text == offline:
        return False
    raise ProtocolError(f"LWT is neither {online!r} nor {offline!r}: {text[:40]!r}")


# -- decisions ------------------------------------------------------------------------------------

def tell_again(attempt_state: str | None, online_live: bool) -> bool:
    """Send OtaUrl + Upgrade again when a device comes online with an attempt it never started.

    Commands are not retained: a device that was offline when told has not heard them.
    """
    return online_live and attempt_state == "pending"


def ask_version(online_live: bool, attempt_open: bool, version_known: bool) -> bool:
    """Ask ``Status 2`` when a device comes back online and its version matters or is unknown."""
    return online_live and (attempt_open or not version_known)
