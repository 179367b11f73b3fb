"""The dashboard: three server-rendered pages, one live event stream, and their static files.

Pages are Tornado templates (autoescaped). ``static/dashboard.js`` keeps them live from the
event stream (``GET /api/events``, server-sent events): a full snapshot on connect, then each
change the service reports. The script builds DOM with ``textContent`` only and writes through
the admin JSON API (``/api/...``), so the dashboard adds no second way to change anything.

Security: every page, the stream and every static file need the admin account (HTTP Basic, as
the API); device accounts get 403. Pages send a strict Content-Security-Policy (scripts and
styles from this server only, nothing inline) and may not be framed (clickjacking on the
Install button). State changes go through the API, whose ``check_same_origin`` refuses
cross-site requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tornado import iostream, web

from tinyota_mqtt.core import image as esp_image
from tinyota_mqtt.core.attempts import Attempt
from tinyota_mqtt.errors import NotFound, TinyOTAError
from tinyota_mqtt.fleet import views as fleet_views
from tinyota_mqtt.fleet.views import attempt_display, size_text
from tinyota_mqtt.http.base import BaseHandler
from tinyota_mqtt.service import Service
from tinyota_mqtt.store import Release

log = logging.getLogger("tinyota.http")

TEMPLATES = Path(__file__).with_name("templates")
STATIC = Path(__file__).with_name("static")

# Nothing inline and nothing from elsewhere: an injected <script> or style="" cannot run even if
# escaping ever failed. 'self' for connect-src covers fetch, XMLHttpRequest and EventSource.
CSP = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "connect-src 'self'",
    "form-action 'self'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
])


def _iso(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds") if ts else ""


def _when(ts: float | None) -> str:
    """A readable absolute time; dashboard.js turns it into "12 s ago" in the reader's clock."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if ts else "never"


def _outcome(attempt: Attempt) -> str:
    return attempt_display(asdict(attempt))["outcome"]


def releases_by_image(service: Service) -> dict[str, list[dict[str, Any]]]:
    """Every image the config names or the store holds, its releases lowest version first."""
    names = list(service.config.images) + [i for i in service.store.images() if i not in service.config.images]
    return {name: [r.to_json() for r in service.store.releases(name)] for name in names}


def snapshot(service: Service) -> dict[str, Any]:
    devices = [service.device_view(d) for d in service.device_ids()]
    return {
        "devices": devices,
        "releases": releases_by_image(service),
        "running": fleet_views.running(devices),
        "health": service.health(),
    }


class DashboardHandler(BaseHandler):
    """A dashboard page: admin only, strict CSP, errors as a small HTML page."""

    async def prepare(self) -> None:
        await self.require_admin()

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Content-Security-Policy", CSP)
        self.set_header("X-Frame-Options", "DENY")  # for browsers older than frame-ancestors
        self.set_header("Referrer-Policy", "same-origin")
        # Pages show the fleet's state: a back button must not show an old one from cache.
        self.set_header("Cache-Control", "no-store")

    def get_template_path(self) -> str:
        return str(TEMPLATES)

    def get_template_namespace(self) -> dict[str, Any]:
        namespace = super().get_template_namespace()
        namespace.update(
            asset=self.asset_url, iso=_iso, when=_when, size=size_text, outcome=_outcome,
            health=self.service.health(), page="",
        )
        return namespace

    def asset_url(self, name: str) -> str:
        # Versioned by content hash, so the files can be cached for long and still never go stale.
        version = AssetHandler.get_version({"static_path": str(STATIC)}, name)
        # Only the presence of ?v= matters to StaticFileHandler; a short prefix keeps URLs readable.
        return f"/static/{name}?v={version[:12]}" if version else f"/static/{name}"

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.error_headers(status_code)
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message, hint = self._reason, None
        if isinstance(exc, TinyOTAError):
            message, hint = exc.message, exc.hint
        elif status_code == 401:
            hint = "log in with the admin account from config.yaml (server.admin)"
        elif status_code == 403 and self.principal is not None and not self.principal.admin:
            hint = "device accounts can only download firmware; log in with the admin account"
        self.render("error.html", title=f"{status_code} {self._reason}", status=status_code,
                    message=message, hint=hint)


class FleetPage(DashboardHandler):
    """GET / : every device, grouped by group, live."""

    def get(self) -> None:
        config = self.service.config
        views = [self.service.device_view(d) for d in self.service.device_ids()]
        sections: list[dict[str, Any]] = []
        for group in config.groups.values():
            policy = ("pinned to " + group.version if group.version else
                      "updates automatically" if group.auto_update else "updates on command")
            sections.append({"key": f"group:{group.name}", "title": group.name, "group": group.name,
                             "detail": f"image {group.image} · {policy}",
                             "devices": [v for v in views if v["group"] == group.name]})
        ungrouped = [v for v in views if v["known"] and v["group"] is None]
        if ungrouped:
            sections.append({"key": "ungrouped", "title": "No group", "group": None,
                             "detail": "tracked, never told to update", "devices": ungrouped})
        # Always rendered (hidden while empty) so a stranger that reports later has a place to go.
        sections.append({"key": "unknown", "title": "Not in the config", "group": None,
                         "detail": "reported over MQTT but not listed under devices:",
                         "devices": [v for v in views if not v["known"]]})
        self.render("fleet.html", title="Fleet", page="fleet", sections=sections, devices=views,
                    groups=list(config.groups),
                    selected_group=self.get_query_argument("group", ""),
                    only_outdated=self.get_query_argument("outdated", "") == "1")


class ReleasesPage(DashboardHandler):
    """GET /releases : the store per image, which devices run each release, and the upload form."""

    def get(self) -> None:
        config = self.service.config
        running = fleet_views.running(self.service.device_view(d) for d in self.service.device_ids())
        images = []
        for name, releases in releases_by_image(self.service).items():
            image = config.images.get(name)
            groups = [g for g in config.groups.values() if g.image == name]
            images.append({
                "name": name, "platform": image.platform if image else None,
                "description": image.description if image else "", "known": image is not None,
                "groups": groups, "releases": list(reversed(releases)),  # newest first
            })
        released = self._just_released()
        self.render("releases.html", title="Releases", page="releases", images=images, running=running,
                    released=released, auto_groups=[g.name for g in config.groups.values()
                                                    if released and g.image == released.image
                                                    and g.auto_update],
                    max_upload=config.server.limits.max_upload_bytes, chip_names=esp_image.CHIP_NAMES)

    def _just_released(self) -> Release | None:
        # dashboard.js comes back here with ?released=<image>/<version> after an upload.
        image, _, version = self.get_query_argument("released", "").partition("/")
        if not image or not version:
            return None
        try:
            return self.service.store.get(image, version)
        except (NotFound, ValueError):
            return None


class DevicePage(DashboardHandler):
    """GET /devices/<id> : one device, its history of attempts and its MQTT topics.

    Home Assistant links here (the update entity's release_url).
    """

    def get(self, device_id: str) -> None:
        if device_id not in self.service.device_ids():
            raise NotFound(f"no device {device_id!r}", "the fleet page lists every device")
        topics = self.service.topics
        view = self.service.device_view(device_id)
        self.render(
            "device.html", title=view["name"], page="device", d=view,
            history=self.service.registry.history(device_id),
            topics=[
                (topics.update(device_id), "server → device", "announcement (retained); empty clears it"),
                (topics.status(device_id), "device → server", "state, version, progress, errors"),
                (topics.availability(device_id), "device (last will)", "online / offline"),
                (topics.state(device_id), "server → Home Assistant", "update entity state"),
                (topics.install(device_id), "Home Assistant → server", "the Install button"),
            ])


class EventStream(DashboardHandler):
    """GET /api/events : server-sent events for the dashboard (and ``curl -N``).

    Sends ``retry:``, then a ``snapshot`` event (every device, every release, which devices run
    each, health), then one event per change: ``device`` (a device view), ``attempt`` (an attempt
    that changed state), ``releases`` (the new release list, with every device view since
    targets may have moved), ``running`` (which devices run each release, after a batch of
    events that changed it), ``health`` (when the MQTT link comes or goes, at once; also
    re-checked with each heartbeat).
    A comment line every ``heartbeat`` seconds
    keeps proxies and NAT tables from closing an idle stream. EventSource reconnects by itself
    and gets a fresh snapshot, so a restarted server or a dropped stream needs nothing else.
    """

    heartbeat = 15.0  # seconds; nginx's proxy_read_timeout defaults to 60
    retry_ms = 2000
    # Events waiting for a slow reader. Past this the stream is closed rather than let memory
    # grow; the browser reconnects and the snapshot it gets replaces everything it missed.
    max_backlog = 5000

    def initialize(self, service: Service) -> None:
        super().initialize(service)
        self._backlog: deque[dict[str, Any]] = deque()
        self._wake = asyncio.Event()
        self._closed = False
        self._overflowed = False
        # What this stream's reader knows each device runs, (image, installed) by id: when a
        # device or releases event changes it, one "running" event follows the batch.
        self._runs: dict[str, tuple[str | None, str | None]] = {}

    async def prepare(self) -> None:
        await super().prepare()
        # Only our own pages read this; refusing other sites also stops a foreign page from
        # holding streams (and their listeners) open in a logged-in admin's browser.
        self.check_same_origin()

    def on_connection_close(self) -> None:
        self._closed = True
        self._wake.set()

    def _on_event(self, event: dict[str, Any]) -> None:
        # Called synchronously by the service on the loop thread: only queue and wake, never write.
        if len(self._backlog) >= self.max_backlog:
            self._overflowed = True
        else:
            self._backlog.append(event)
        self._wake.set()

    def _send(self, name: str, data: Any) -> None:
        # json.dumps never emits a raw newline, so one data: line holds the whole event.
        self.write(f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n")

    def _send_event(self, event: dict[str, Any]) -> bool:
        """Send one event; True if it changed what a device runs, as this reader knows it."""
        kind = event.get("type")
        if kind == "device":
            self._send("device", event["device"])
            return self._note_runs([event["device"]])
        if kind == "attempt":
            self._send("attempt", event["attempt"])
        elif kind == "releases":
            devices = [self.service.device_view(d) for d in self.service.device_ids()]
            self._send("releases", {"releases": releases_by_image(self.service), "devices": devices})
            return self._note_runs(devices)
        elif isinstance(kind, str):
            self._send(kind, {k: v for k, v in event.items() if k != "type"})
        return False

    def _note_runs(self, devices: list[dict[str, Any]]) -> bool:
        changed = False
        for view in devices:
            runs = (view["image"], view["installed"])
            if self._runs.get(view["id"]) != runs:
                self._runs[view["id"]] = runs
                changed = True
        return changed

    def _running(self) -> dict[str, dict[str, list[str]]]:
        # In the order the snapshot listed the devices (dicts keep it), as the page does.
        return fleet_views.running({"id": device, "image": image, "installed": installed}
                                   for device, (image, installed) in self._runs.items())

    async def get(self) -> None:
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("X-Accel-Buffering", "no")  # nginx: pass events on at once
        unsubscribe = self.service.watch(self._on_event)
        try:
            self.write(f"retry: {self.retry_ms}\n\n")
            first = snapshot(self.service)
            self._note_runs(first["devices"])
            health = first["health"]
            self._send("snapshot", first)
            await self.flush()
            last_beat = time.monotonic()
            while True:
                timeout = max(0.0, last_beat + self.heartbeat - time.monotonic())
                with contextlib.suppress(TimeoutError):  # a heartbeat is due
                    await asyncio.wait_for(self._wake.wait(), timeout)
                self._wake.clear()
                if self._closed:
                    return
                if self._overflowed:
                    log.warning("event stream to %s fell %d events behind; closing it so it resyncs",
                                self.request.remote_ip, self.max_backlog)
                    break
                refreshed = moved = False
                while self._backlog:
                    event = self._backlog.popleft()
                    if event.get("type") == "releases":
                        if refreshed:
                            continue  # a burst of store changes is one refresh
                        refreshed = True
                    moved = self._send_event(event) or moved
                if moved:  # a fleet update's thousand new versions: one "running" per batch
                    self._send("running", self._running())
                if time.monotonic() - last_beat >= self.heartbeat:
                    last_beat = time.monotonic()
                    now = self.service.health()
                    if now != health:
                        health = now
                        self._send("health", now)
                    self.write(": keep-alive\n\n")
                await self.flush()
        except iostream.StreamClosedError:
            self._closed = True
        finally:
            unsubscribe()


class IconHandler(web.RequestHandler):
    """GET /icon.svg : the TinyOTA icon, without a login.

    Home Assistant's frontend shows it as every update entity's picture, through an <img> that
    cannot send our credentials. It is the dashboard's favicon and tells nothing about the fleet.
    """

    def get(self) -> None:
        self.set_header("Content-Type", "image/svg+xml")
        self.set_header("Cache-Control", "public, max-age=86400")
        self.set_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.write((STATIC / "favicon.svg").read_bytes())


class AssetHandler(BaseHandler, web.StaticFileHandler):
    """GET /static/<file> : the CSS, JS and icon, admin only like everything else here.

    StaticFileHandler brings ETag/304, Range and HEAD; ``?v=<hash>`` URLs (see asset_url) get a
    long max-age. A 'private' cache is allowed, a shared one is not (the request carried
    Authorization, RFC 9111 §3.5).
    """

    def initialize(self, service: Service, path: str = str(STATIC),  # type: ignore[override]
                   default_filename: str | None = None) -> None:
        # Two parents with different initialize() signatures; Tornado passes both by keyword.
        self.service = service
        web.StaticFileHandler.initialize(self, path, default_filename)

    async def prepare(self) -> None:
        await self.require_admin()
