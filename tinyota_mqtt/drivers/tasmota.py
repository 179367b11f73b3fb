"""The tasmota kind: Tasmota firmware, told with its own commands and heard on its own topics.

Start: ``cmnd/<topic>/OtaUrl <url>`` then ``cmnd/<topic>/Upgrade 1``, never retained, after the
attempt is committed. The URL carries a single-use download token (``fleet/tokens.py``) because
Tasmota cannot send a header; no password of any kind goes on the bus. Outcome and version come
from ``stat/<topic>/RESULT`` (or ``UPGRADE`` with SetOption4), ``STATUS2``, ``tele/<topic>/INFO1``
and ``tele/<topic>/LWT``; the meaning of each is in ``core/tasmota.py``. Tasmota's discovery
(``tasmota/discovery/<MAC>/config``, retained) is read with hatasmota, Home Assistant's own
Tasmota library, so a device on the broker that the config does not name is listed with its
version. Whether a report confirms or fails an attempt is ``Reports``' and ``core/attempts.py``'s
business; this module only translates.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tinyota_mqtt.config.model import Config
from tinyota_mqtt.core import attempts as att
from tinyota_mqtt.core import protocol, tasmota
from tinyota_mqtt.core import tokens as tk
from tinyota_mqtt.errors import NotFound
from tinyota_mqtt.fleet.publisher import Publisher
from tinyota_mqtt.fleet.reports import Reports
from tinyota_mqtt.fleet.tokens import TokenStore
from tinyota_mqtt.registry import Registry
from tinyota_mqtt.store import FirmwareStore, Release

log = logging.getLogger("tinyota.service")

MAX_DISCOVERED = 1000  # unconfigured devices listed from discovery; bounds what a flood can add


@dataclass(frozen=True)
class Discovered:
    """A Tasmota device as its discovery message describes it."""

    id: str  # how it is listed: its Topic when that is a usable device id, else tasmota-<MAC>
    mac: str
    topic: str
    full_topic: str
    version: str
    model: str
    name: str
    configured: str | None  # the configured device it is, if any

    def snippet(self, group: str = "GROUP") -> str:
        """What to add under ``devices:`` in config.yaml to manage it (docs/tasmota.md, adoption)."""
        shown = self.topic if protocol.DEVICE_ID.fullmatch(self.topic) else json.dumps(self.topic)
        extra = "" if self.topic == self.id else f", topic: {shown}"
        if self.full_topic != tasmota.DEFAULT_FULL_TOPIC:
            extra += f", full_topic: {json.dumps(self.full_topic)}"
        return f"  {self.id}: {{kind: tasmota, group: {group}{extra}, mac: {self.mac}}}"


@dataclass(frozen=True)
class Download:
    """What a request on a token URL may have."""

    release: Release | None
    variant: str
    refusal: str | None = None
    status: int = 403


class TasmotaDriver:
    kind = "tasmota"

    def __init__(self, config: Config, publisher: Publisher, reports: Reports, registry: Registry,
                 store: FirmwareStore, tokens: TokenStore) -> None:
        self.config = config
        self.publisher = publisher
        self.reports = reports
        self.registry = registry
        self.store = store
        self.tokens = tokens  # its clock is the one tokens are judged by
        self.discovered: dict[str, Discovered] = {}  # by MAC
        self._told_offline: set[str] = set()  # attempts whose commands went out while the device was away
        self._topics: dict[str, tasmota.Topics] = {}
        self._by_base: dict[str, str] = {}  # "stat/<topic>/" and "tele/<topic>/" → device id
        for device in config.devices.values():
            if device.kind == "tasmota":
                topics = tasmota.Topics(device.tasmota_topic, device.full_topic or tasmota.DEFAULT_FULL_TOPIC)
                self._topics[device.id] = topics
                self._by_base[topics.stat("")] = device.id
                self._by_base[topics.tele("")] = device.id

    def subscriptions(self) -> list[str]:
        subs = [s for topics in self._topics.values() for s in topics.subscriptions()]
        return [*subs, f"{tasmota.DISCOVERY_PREFIX}/+/config"]

    # -- telling ---------------------------------------------------------------------------------

    def url(self, device_id: str, token: str, release: Release) -> str:
        gzip = release.firmware is not None and release.firmware.gzip
        return tasmota.download_url(self.config.server.public_url, device_id, token, gzip=gzip)

    def minimal_for(self, device_id: str, release: Release) -> Release | None:
        """The minimal image served for the first step: the group's ``minimal_image`` release of
        the same version, else its newest (Tasmota's minimal build only has to fetch the next)."""
        group = self.config.group_of(device_id)
        if group is None or group.minimal_image is None:
            return None
        try:
            return self.store.get(group.minimal_image, release.version)
        except NotFound:
            return self.store.latest(group.minimal_image)

    def tell(self, device_id: str, release: Release, attempt: att.Attempt) -> None:
        if not self.registry.device(device_id).online:
            self._told_offline.add(attempt.id)  # it cannot hear a command now: tell it when it is back
        self._send(device_id, release, attempt, self.publisher.command_after_commit)

    def _send(self, device_id: str, release: Release, attempt: att.Attempt,
              send: Callable[[str, bytes], None]) -> None:
        topics = self._topics[device_id]
        token = self.tokens.mint(attempt, release, self.minimal_for(device_id, release))
        url = self.url(device_id, token, release)
        # The config refuses a public_url too long for this (loader.py); this guards the rule.
        assert len(url) <= tasmota.OTAURL_LIMIT, "the config check lets no longer OtaUrl through"
        send(topics.command("OtaUrl"), url.encode())
        send(topics.command("Upgrade"), b"1")

    def withdraw(self, device_id: str, attempt: att.Attempt | None) -> None:
        # A command cannot be taken back; its token can, so the download is refused.
        if attempt is not None:
            self.tokens.revoke(attempt.id, f"attempt {attempt.id} was withdrawn")

    def republish(self, attempt: att.Attempt, release: Release) -> None:
        if tasmota.tell_again(attempt.state, online_live=True):
            self._now(attempt, release)
        elif self.tokens.for_attempt(attempt.id) is None:
            # The server restarted during the update and its token is gone. Telling the device
            # again could flash it twice; ask where it is instead (see _version).
            self.publisher.publish(self._topics[attempt.device].command("Status"), b"2", retain=False)

    def _now(self, attempt: att.Attempt, release: Release) -> None:
        self._send(attempt.device, release, attempt,
                   lambda topic, payload: self.publisher.publish(topic, payload, retain=False))

    # -- serving ---------------------------------------------------------------------------------

    def download(self, device_id: str, token: str, variant: str) -> Download:
        """Which release a request on ``/t/<device>/<token>/…`` gets, or why it gets none."""
        grant = self.tokens.lookup(token)
        why = tk.refusal(grant, device_id, variant, self.tokens.clock())
        if why is None and grant is not None:
            current = self.registry.open_attempt(device_id)
            if current is None or current.id != grant.attempt:
                why = "the token's attempt is over"
        if why is not None or grant is None:
            log.warning("%s: download refused (token %s): %s", device_id, tk.mask(token), why)
            self._own_retry(device_id, grant, variant)
            return Download(None, variant, why or "unknown download token")
        try:
            if variant == tk.MINIMAL:
                assert grant.minimal_image is not None and grant.minimal_version is not None
                release = self.store.get(grant.minimal_image, grant.minimal_version)
            else:
                release = self.store.get(grant.image, grant.version)
        except NotFound:
            return Download(None, variant, f"the {variant} image was deleted", status=404)
        if variant == tk.FULL and release.sha256 != grant.sha256:
            return Download(None, variant, "the release was replaced since the token was minted", status=404)
        return Download(release, variant)

    def _own_retry(self, device_id: str, grant: tk.Grant | None, variant: str) -> None:
        """A refusal that says what went wrong on the device: tell Reports, which fails the attempt.

        Tasmota retries a failed upgrade by fetching the same URL again (up to five tries): a
        device that asks again for a file it took whole could not flash it (MD5, header, flash
        write), and its own final word would only be this refusal. And a device asking for the
        minimal file when none is released has an image too big for its flash.
        """
        if grant is None or grant.device != device_id or grant.revoked is not None:
            return
        current = self.registry.open_attempt(device_id)
        if current is None or current.id != grant.attempt:
            return
        try:
            release = self.store.get(grant.image, grant.version)
        except NotFound:
            return
        if variant in grant.served:
            reason = (f"the device took the {variant} image whole and asked for it again: Tasmota retries "
                      "after it could not flash an image (MD5, header or flash error; its console says which)")
        elif variant == tk.MINIMAL and grant.minimal_image is None:
            group = self.config.group_of(device_id)
            reason = ("the image does not fit the device's free flash and no minimal image is released for "
                      f"it (set groups.{group.name if group else '…'}.minimal_image, docs/tasmota.md)")
        else:
            return
        self.reports.download_refused(device_id, release, reason)

    # -- listening -------------------------------------------------------------------------------

    def handle(self, topic: str, payload: bytes, retained: bool) -> bool:
        if topic.startswith(tasmota.DISCOVERY_PREFIX + "/"):
            self._discovery(topic, payload)
            return True
        device_id = self._by_base.get(topic[: topic.rfind("/") + 1])
        if device_id is None:
            return False
        where = self._topics[device_id].split(topic)
        if where is None:
            return False
        prefix, name = where
        try:
            if prefix == "tele" and name == "LWT":
                self._lwt(device_id, payload, live=not retained)
            elif (prefix, name) in (("tele", "INFO1"), ("stat", "STATUS2")):
                self._version(device_id, tasmota.version_of(tasmota.reply(payload)), live=not retained)
            elif prefix == "stat" and name in ("RESULT", "UPGRADE", "UPLOAD"):
                self._result(device_id, tasmota.reply(payload), retained)
        except protocol.ProtocolError as exc:
            self.reports.log_once(device_id, f"ignored Tasmota {prefix}/{name}: {tk.mask_urls(str(exc))}")
        return True

    def _lwt(self, device_id: str, payload: bytes, *, live: bool) -> None:
        online = tasmota.parse_lwt(payload)
        self.reports.on_availability(device_id, online, live=live)
        if not online:
            return
        attempt = self.registry.open_attempt(device_id)
        if attempt is not None and attempt.id in self._told_offline and tasmota.tell_again(attempt.state, live):
            self._told_offline.discard(attempt.id)
            # It was offline when told: commands are not retained, so tell it again now.
            log.info("%s: back online before it started attempt %s; telling it again", device_id, attempt.id)
            self._tell_release_of(attempt)
        if tasmota.ask_version(live, attempt is not None, self.registry.device(device_id).version is not None):
            self.publisher.publish(self._topics[device_id].command("Status"), b"2", retain=False)

    def _tell_release_of(self, attempt: att.Attempt) -> None:
        image = self.config.image_of(attempt.device)
        try:
            release = self.store.get(image.name, attempt.version) if image else None
        except NotFound:
            return  # the announcer withdraws an attempt whose release is gone
        if release is not None and release.sha256 == attempt.sha256:
            self._now(attempt, release)

    def _version(self, device_id: str, version: tasmota.Version | None, *, live: bool) -> None:
        if version is None:
            raise protocol.ProtocolError("no Version in it")
        attempt = self.registry.open_attempt(device_id)
        if version.step:
            # The minimal (or safeboot) build, between the two steps: the update is under way.
            if attempt is not None:
                self.reports.on_status(device_id, protocol.Status(state="flashing", id=attempt.id), live=live)
                if live and self.tokens.for_attempt(attempt.id) is None:
                    # Between the steps across a server restart: no token for its second download.
                    self._tell_release_of(attempt)
            return
        self.reports.on_status(device_id, protocol.Status(state="idle", version=version.version), live=live)

    def _result(self, device_id: str, body: dict[str, Any], retained: bool) -> None:
        upgrade = tasmota.upgrade_of(body)
        if upgrade is None:
            return  # a reply to some other command (OtaUrl's echo, POWER, …): nothing to do here
        if retained:
            return  # a reply belongs to a command of ours, and none of ours is retained
        attempt = self.registry.open_attempt(device_id)
        if attempt is None and upgrade.outcome == "failed":
            # Tasmota's last word after the server already failed the attempt (it refused a retry):
            # Reports keeps both reasons.
            last = self.registry.last_attempt(device_id)
            attempt = last if last is not None and last.state == att.FAILED else None
        if attempt is None:
            return
        if upgrade.outcome == "started":
            log.info("%s: Tasmota started attempt %s (it runs %s)", device_id, attempt.id, upgrade.detail)
            return
        if upgrade.outcome == "restarting":
            status = protocol.Status(state="rebooting", id=attempt.id)
        else:
            status = protocol.Status(state="failed", id=attempt.id, error=f"Tasmota: {upgrade.detail}"[:256])
        self.reports.on_status(device_id, status, live=True)  # a reply is never retained (above)

    # -- discovery -------------------------------------------------------------------------------

    def _discovery(self, topic: str, payload: bytes) -> None:
        # Imported on the first discovery message, not at start: hatasmota and voluptuous are
        # about 4 MB of a server that may never see a Tasmota device (bench footprint).
        import voluptuous
        from hatasmota import discovery as ha_discovery
        from hatasmota import utils as ha_utils

        mac = ha_utils.discovery_topic_get_mac(topic, tasmota.DISCOVERY_PREFIX)
        if mac is None or not ha_utils.discovery_topic_is_device_config(topic):
            return
        if not payload:
            self.discovered.pop(mac, None)  # Tasmota clears its discovery when SetOption19 changes
            return
        try:
            if len(payload) > tasmota.MAX_PAYLOAD:
                raise ValueError(f"{len(payload)} bytes")
            message = ha_discovery.TasmotaDiscoveryMsg(json.loads(payload.decode("utf-8")))
            info = ha_discovery.get_device_config(message)
            found = self._describe(mac, message, info)
        except (voluptuous.Invalid, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            self.reports.log_once(f"tasmota-{mac}", f"ignored Tasmota discovery: {str(exc)[:120]}")
            return
        if mac not in self.discovered and len(self.discovered) >= MAX_DISCOVERED:
            self.reports.log_once(f"tasmota-{mac}", "too many discovered Tasmota devices; ignoring this one")
            return
        self.discovered[mac] = found
        if found.configured is None:
            # Listed (status, dashboard, API) as unconfigured, with the version it announces.
            self.reports.on_status(found.id, protocol.Status(state="idle", version=found.version), live=False)
        elif self.registry.device(found.configured).version is None \
                and self.registry.open_attempt(found.configured) is None:
            # A retained discovery may predate an update under way; it only fills in the unknown.
            self.reports.on_status(found.configured, protocol.Status(state="idle", version=found.version),
                                   live=False)

    def _describe(self, mac: str, message: dict[str, Any], info: dict[str, Any]) -> Discovered:
        topic, full_topic = str(message["t"]), str(message["ft"])
        version = tasmota.parse_version(str(info["sw"])).version
        configured = next((d for d, t in self._topics.items()
                           if (t.topic, t.full_topic) == (topic, full_topic)), None)
        usable = protocol.DEVICE_ID.fullmatch(topic) and topic not in self.config.devices and topic != "server"
        listed = configured or (topic if usable else f"tasmota-{mac}")
        return Discovered(id=listed, mac=mac, topic=topic, full_topic=full_topic, version=version,
                          model=str(info.get("md", "")), name=str(info.get("name", "")), configured=configured)

    def discovered_as(self, device_id: str) -> Discovered | None:
        return next((d for d in self.discovered.values() if d.id == device_id), None)
