"""The admin JSON API under /api/ and /healthz. Admin credentials for everything but /healthz."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from typing import Any

from tornado import web
from tornado.http1connection import HTTP1Connection

from tinyota_mqtt.errors import NotFound, StoreError, TinyOTAError
from tinyota_mqtt.http.base import BaseHandler
from tinyota_mqtt.store import Expectation, Upload

log = logging.getLogger("tinyota.http")
_HEX = set("0123456789abcdefABCDEF")


class Conflict(TinyOTAError):
    status = 409


def _hex_arg(value: str | None, length: int, name: str) -> str | None:
    if value is None or value == "":
        return None
    if len(value) != length or not set(value) <= _HEX:
        raise TinyOTAError(f"{name} must be {length} hex digits")
    return value.lower()


class AdminHandler(BaseHandler):
    async def prepare(self) -> None:
        await self.require_admin()
        if self.request.method not in ("GET", "HEAD"):
            self.check_same_origin()

    def json_body(self) -> dict[str, Any]:
        if not self.request.body:
            return {}
        try:
            body = json.loads(self.request.body)
        except (UnicodeDecodeError, ValueError):
            raise TinyOTAError("request body is not JSON") from None
        if not isinstance(body, dict):
            raise TinyOTAError("request body must be a JSON object")
        return body


class HealthHandler(BaseHandler):
    def get(self) -> None:
        self.write_json(self.service.health())


@web.stream_request_body
class ReleasesHandler(AdminHandler):
    """GET lists releases; POST streams a new one to disk (never whole in memory).

    POST /api/releases?image=kitchen&version=1.4.0[&notes=…][&replace=1][&force=1][&md5=…][&sha256=…]
    with the image bytes as the body. Content-Length is the declared size.
    """

    upload: Upload | None = None
    refusal: TinyOTAError | None = None

    async def prepare(self) -> None:
        # Tornado reads no body until prepare() is done, so the login may be checked off-loop first.
        await super().prepare()
        if self.request.method != "POST":
            return
        limit = self.service.config.server.limits.max_upload_bytes
        if isinstance(self.request.connection, HTTP1Connection):
            self.request.connection.set_max_body_size(limit)
        declared = self.request.headers.get("Content-Length")
        if declared is None:
            raise TinyOTAError("send the image with a Content-Length", "curl --data-binary @fw.bin does")
        if not declared.isdigit():
            raise TinyOTAError("Content-Length must be a number")
        if int(declared) > limit:
            raise StoreError(f"release is larger than the {limit} byte limit")
        image = self.get_query_argument("image", "")
        if image not in self.service.config.images:
            raise TinyOTAError(f"image {image!r} is not in the config",
                               "images: " + ", ".join(self.service.config.images))
        self.upload = self.service.store.begin(
            image, self.get_query_argument("version", ""), self.get_query_argument("notes", ""),
            replace=self.get_query_argument("replace", "") in ("1", "true", "yes"),
            force=self.get_query_argument("force", "") in ("1", "true", "yes"),
            platform=self.service.config.images[image].platform,
            expect=Expectation(size=int(declared),
                               md5=_hex_arg(self.get_query_argument("md5", None), 32, "md5"),
                               sha256=_hex_arg(self.get_query_argument("sha256", None), 64, "sha256")))

    def data_received(self, chunk: bytes) -> None:
        # An exception here would drop the connection with a traceback in the log; keep the
        # refusal, discard the rest of the body, and answer it properly in post().
        if self.upload is not None and self.refusal is None:
            try:
                self.upload.write(chunk)
            except TinyOTAError as exc:
                self.refusal = exc

    def on_connection_close(self) -> None:
        if self.upload is not None:
            self.upload.abort()  # the client went away: nothing of it becomes visible
            log.warning("upload of %s %s interrupted after %d bytes; discarded",
                        self.upload.image, self.upload.version, self.upload.size)

    def on_finish(self) -> None:
        if self.upload is not None:
            self.upload.abort()  # no-op after a commit; cleans up after any error

    def get(self) -> None:
        image = self.get_query_argument("image", None)
        if image is not None and image not in self.service.config.images \
                and image not in self.service.store.images():
            raise NotFound(f"no image {image!r}", "images: " + (", ".join(self.service.config.images) or "(none)"))
        self.write_json([r.to_json() for r in self.service.store.releases(image)])

    def post(self) -> None:
        assert self.upload is not None
        if self.refusal is not None:
            raise self.refusal
        release = self.upload.commit()
        log.info("released %s %s (%d bytes) via the API", release.image, release.version, release.size)
        # The answer first (finish() hands it to the kernel at once), then announce to automatic
        # groups now rather than at the next tick: the uploader need not wait on a thousand
        # announcements, and no request of anyone's is handled before they are made.
        self.write_json(release.to_json(), 201)
        self.service.tick()


class ReleaseHandler(AdminHandler):
    def get(self, image: str, version: str) -> None:
        self.write_json(self.service.store.get(image, version).to_json())

    def delete(self, image: str, version: str) -> None:
        release = self.service.store.delete(image, version)
        self.service.tick()
        self.write_json(release.to_json())


class DevicesHandler(AdminHandler):
    def get(self) -> None:
        self.write_json([self.service.device_view(d) for d in self.service.device_ids()])


def _known(handler: AdminHandler, device_id: str) -> None:
    if device_id not in handler.service.device_ids():
        raise NotFound(f"no device {device_id!r}: it is not in the config and never reported",
                       "`tinyota status` lists the devices")


def _limit(handler: AdminHandler) -> int:
    raw = handler.get_query_argument("limit", "50")
    if not raw.isdigit() or not 1 <= int(raw) <= 10_000:
        raise TinyOTAError("limit must be a number from 1 to 10000")
    return int(raw)


class DeviceHandler(AdminHandler):
    def get(self, device_id: str) -> None:
        _known(self, device_id)
        view = self.service.device_view(device_id)
        view["history"] = [asdict(a) for a in self.service.registry.history(device_id)]
        view["topics"] = {
            "update": self.service.topics.update(device_id),
            "status": self.service.topics.status(device_id),
            "availability": self.service.topics.availability(device_id),
            "state": self.service.topics.state(device_id),
            "install": self.service.topics.install(device_id),
        }
        self.write_json(view)

    def delete(self, device_id: str) -> None:
        """Forget a device the config does not name: its state, its history, its retained reports."""
        _known(self, device_id)
        if device_id in self.service.config.devices:
            raise Conflict(f"{device_id} is in the config, so it cannot be forgotten",
                           "remove it from the config and restart the server first")
        self.service.registry.forget_device(device_id)
        # A retained report would bring it back at the next start: an empty retained message
        # deletes it on the broker (the documented ACL lets the server write tinyota/#).
        for topic in (self.service.topics.status(device_id), self.service.topics.availability(device_id)):
            self.service.publisher.publish(topic, b"", retain=True, force=True)
        log.info("forgot unknown device %s", device_id)
        self.write_json({"forgotten": device_id})


class DeviceHistoryHandler(AdminHandler):
    def get(self, device_id: str) -> None:
        _known(self, device_id)
        self.write_json([asdict(a) for a in self.service.registry.history(device_id, _limit(self))])


class InstallHandler(AdminHandler):
    """POST /api/devices/<id>/install  or  /api/groups/<group>/install, body {"version": "…"}."""

    def post(self, kind: str, name: str) -> None:
        version = self.json_body().get("version")
        if version is not None and not isinstance(version, str):
            raise TinyOTAError("version must be a string")
        if kind == "groups":
            started = self.service.install_group(name, version)
        else:
            started = self.service.install([name], version)
        self.service.registry.flush()
        self.write_json({"attempts": [asdict(a) for a in started]}, 202)


class CancelHandler(AdminHandler):
    def post(self, kind: str, name: str) -> None:
        if kind == "groups":
            if name not in self.service.config.groups:
                raise web.HTTPError(404)
            devices = [d.id for d in self.service.config.members(name)]
        else:
            devices = [name]
        cancelled = self.service.cancel(devices)
        self.service.registry.flush()
        self.write_json({"cancelled": cancelled})
