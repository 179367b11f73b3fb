"""Firmware downloads, built on Tornado's StaticFileHandler.

StaticFileHandler already does the HTTP parts right (Content-Length always, Range → 206/416,
If-None-Match → 304, HEAD = GET without a body, and ``await self.flush()`` after every chunk
so a slow device slows only its own download). What we change is which file a URL means: the
store looks the release up, so a URL never becomes a path and cannot leave the store; and how
the body travels. On a plain-HTTP connection the kernel sends it (``os.sendfile``, see
``transfer.FileSender``) once Tornado has written the headers: no chunk is read into Python or
held per connection. Over HTTPS the bytes must pass through the TLS layer in user space, so they
go the StaticFileHandler way, in chunks sized to the client's pace (see ``_chunks``).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

from tornado import iostream, web
from tornado.http1connection import HTTP1Connection

from tinyota_mqtt.core import esp_headers, policy
from tinyota_mqtt.errors import NotFound
from tinyota_mqtt.http.base import BaseHandler
from tinyota_mqtt.http.transfer import FileSender, StallWatch
from tinyota_mqtt.service import Service
from tinyota_mqtt.store import Release

log = logging.getLogger("tinyota.http")

# Chunk sizes for streaming an image (see FirmwareHandler.get_content).
DEVICE_CHUNK = 32 * 1024  # what each open download holds in memory while a device takes it
FAST_CHUNK = 256 * 1024  # for a client that keeps up with FAST_RATE: fewer trips through the loop
FAST_RATE = 4_000_000  # bytes/s; ESP cores on Wi-Fi stay well below it
FAST_AFTER = 256 * 1024  # bytes sent before the rate says anything: socket buffers absorb the start
# How a send fails when the device went away (reset, or TCP gave up on it): the log line's
# "client-disconnected" says it, a warning would only repeat it.
PEER_GONE = frozenset({errno.EPIPE, errno.ECONNRESET, errno.ECONNABORTED, errno.ENOTCONN, errno.ESHUTDOWN,
                       errno.ETIMEDOUT})


class FirmwareHandler(BaseHandler, web.StaticFileHandler):
    """``GET|HEAD /fw/<image>/<version>.bin``."""

    release: Release | None = None

    def initialize(self, service: Service) -> None:  # type: ignore[override]
        BaseHandler.initialize(self, service)
        web.StaticFileHandler.initialize(self, path=str(service.store.root))
        self.sent = 0  # body bytes the kernel took (not merely handed to Tornado)
        self.started = time.monotonic()
        self.client_gone = False
        self.stalled = False  # cut by the stall watch (limits.idle_timeout)
        self.refusal: str | None = None
        self.via: str | None = None  # how the body went: "sendfile" or "copy"
        self._file: tuple[int, int, int] | None = None  # (fd, offset, count) left for _send_file
        self._sender: FileSender | None = None

    def head(self, image: str, version: str) -> Any:  # type: ignore[override]
        return self.get(image, version, include_body=False)

    async def get(self, image: str, version: str, include_body: bool = True) -> None:  # type: ignore[override]
        principal = await self.authenticate()
        if not principal.admin:
            self._refuse_unannounced(principal.username, image, version)
        try:
            release = self.service.store.get(image, version)
        except NotFound:
            raise web.HTTPError(404, "no release %s of %s", version[:64], image) from None
        await self._serve(release, include_body)

    def _refuse_unannounced(self, device: str, image: str, version: str) -> None:
        """403 unless this is the device's target or the version it runs (core/policy.refusal).

        Decided before the store is asked, so "not yours" reads the same whether the release
        exists or not.
        """
        service = self.service
        reason = policy.refusal(service.config, device, image, version,
                                target=service.target_version(device),
                                installed=service.registry.device(device).version)
        if reason is None:
            return
        with contextlib.suppress(NotFound):  # nothing to record against; the log line still names it
            service.download_refused(device, service.store.get(image, version), reason)
        raise web.HTTPError(403, "device %s asked for %s %s: %s", device, image, version[:64], reason,
                            reason="Forbidden: not announced to this device")

    async def _serve(self, release: Release, include_body: bool) -> None:
        try:
            esp = esp_headers.parse(self.request.headers.get)
        except esp_headers.BadEspHeader as exc:
            raise web.HTTPError(400, str(exc), reason="Bad Request: " + str(exc)) from None
        self.release = release
        device = None if self.principal is None or self.principal.admin else self.principal.username
        if esp.version is not None and esp.version == release.version:
            # ESP8266httpUpdate and HTTPUpdate both read 304 as "no update available".
            self.set_status(304)
            return
        if esp.free_space is not None and esp.free_space < release.size:
            reason = (f"not enough free space: image is {release.size} bytes, "
                      f"device has {esp.free_space}")
            self.refusal = reason
            if device is not None:
                self.service.download_refused(device, release, reason)
            raise web.HTTPError(403, reason, reason="Forbidden: " + reason)
        if device is not None and include_body:
            self.service.download_started(device, release)
        await self._write_release(release, include_body)
        if include_body and self.get_status() in (200, 206):
            # StaticFileHandler stops quietly when the client goes away; notice it for the log.
            self.client_gone = self.sent < int(self._headers.get("Content-Length", 0))
            if device is not None and self.get_status() == 200 and not self.client_gone:
                self.service.download_finished(device, release)  # "download+report" confirms on it

    async def _write_release(self, release: Release, include_body: bool) -> None:
        """Headers and body of the release's file: StaticFileHandler's, then ``_send_file`` for a
        body ``get_content`` left to the kernel. Every route that serves a release goes through here."""
        try:
            await web.StaticFileHandler.get(self, self.service.store.relative_path_of(release), include_body)
            if self._file is not None:
                await self._send_file(*self._file)
        finally:
            if self._file is not None:
                os.close(self._file[0])
                self._file = None

    # -- the body on a plain connection: sendfile --------------------------------------------------

    def _can_sendfile(self) -> bool:
        """A plain TCP connection that Tornado's HTTP/1 code serves, and no output transform
        (gzip) that would have to see the bytes."""
        conn = self.request.connection
        return (hasattr(os, "sendfile") and isinstance(conn, HTTP1Connection)
                and type(conn.stream) is iostream.IOStream and conn.stream.socket is not None
                and not self.application.transforms)

    async def _send_file(self, fd: int, offset: int, count: int) -> None:
        """Headers through Tornado, then the body by the kernel; the connection stays usable.

        Tornado counts the body bytes it wrote against Content-Length and refuses to finish a
        response short of it (it closes the connection), so the bytes sent here are counted in
        for it: its ``_expected_content_remaining``, the one private name this module touches.
        """
        conn = self.request.connection
        assert isinstance(conn, HTTP1Connection)
        stream = conn.stream
        try:
            await self.flush()  # resolves once Tornado's buffer is in the kernel: the socket is ours
        except iostream.StreamClosedError:
            return
        if stream.socket is None or stream.closed():
            return
        self.via = "sendfile"
        watch = StallWatch(self.service.config.server.limits.idle_timeout, self._on_stall)
        sender = self._sender = FileSender(stream.socket, fd, offset, count, watch.progress)
        try:
            await sender.start()
        except (OSError, EOFError, iostream.StreamClosedError) as exc:
            if isinstance(exc, EOFError) or (isinstance(exc, OSError) and exc.errno not in PEER_GONE):
                log.warning("download %s to %s failed: %s; closing the connection",
                            self.request.path, self.client_address, exc)
            stream.close()  # the body cannot be completed: the client must see the connection end
        finally:
            watch.stop()
            sender.stop(iostream.StreamClosedError())  # a no-op unless cancelled mid-way
            self._sender = None
            self.sent += sender.sent
        if conn._expected_content_remaining is not None:
            conn._expected_content_remaining -= sender.sent

    def _on_stall(self, idle: float) -> None:
        log.warning("download %s to %s took nothing for %.0f s (limits.idle_timeout); closing the connection",
                    self.request.path, self.client_address, idle)
        self.stalled = True
        if self._sender is not None:
            self._sender.stop(iostream.StreamClosedError())
        conn = self.request.connection
        if isinstance(conn, HTTP1Connection) and conn.stream is not None:
            conn.stream.close()

    def on_connection_close(self) -> None:
        # The peer went away (or the server is stopping) while the kernel was sending for us.
        if self._sender is not None:
            self._sender.stop(iostream.StreamClosedError())
        super().on_connection_close()

    # -- StaticFileHandler hooks -----------------------------------------------------------------

    def get_content(self, abspath: str, start: int | None = None,  # type: ignore[override]
                    end: int | None = None) -> Iterator[bytes]:
        """The body for StaticFileHandler to write: nothing on a plain connection, where the file
        is opened here (so the bytes are those of the release looked up now, whatever replaces
        it later) and left for ``_send_file``; over TLS, the file in chunks."""
        if not self._can_sendfile():
            self.via = "copy"
            return self._chunks(abspath, start, end)
        fd = os.open(abspath, os.O_RDONLY)
        begin = start or 0
        self._file = (fd, begin, (self.get_content_size() if end is None else end) - begin)
        return iter(())

    def _chunks(self, abspath: str, start: int | None, end: int | None) -> Iterator[bytes]:
        """The image in chunks sized to the client's pace.

        Every open download holds its current chunk until the client has taken it, and Tornado's
        chunks are 64 KiB: a thousand ESP-paced devices pinned 64 MB (bench slow fleet, N=1000:
        peak RSS 144-167 MB; 94 MB with 32 KiB). A client that takes the image faster than any
        device (curl, CI) gets 256 KiB chunks once its pace is known (4 MiB images: 1.4× faster).
        """
        remaining = None if end is None else end - (start or 0)
        began, sent, size = time.monotonic(), 0, DEVICE_CHUNK
        watch = StallWatch(self.service.config.server.limits.idle_timeout, self._on_stall)
        try:
            with open(abspath, "rb") as file:
                if start:
                    file.seek(start)
                while remaining is None or remaining > 0:
                    chunk = file.read(size if remaining is None else min(size, remaining))
                    if not chunk:
                        return
                    if remaining is not None:
                        remaining -= len(chunk)
                    handed = time.monotonic()
                    yield chunk  # StaticFileHandler.get writes it and resumes us once it is flushed
                    watch.progress()
                    self.sent += len(chunk)
                    now = time.monotonic()
                    sent += len(chunk)
                    fast = (sent >= FAST_AFTER and sent > FAST_RATE * (now - began)
                            and len(chunk) > FAST_RATE * (now - handed))  # and it did not just stall
                    size = FAST_CHUNK if fast else DEVICE_CHUNK
        finally:
            watch.stop()

    def validate_absolute_path(self, root: str, absolute_path: str) -> str | None:
        # StaticFileHandler resolves symlinks and checks the path stays under the root, a dozen
        # lstat calls per request; here the path is the store's own name for a release it looked
        # up (a URL never becomes a path), so only "is it still there, as a file" is left to ask.
        if not os.path.isfile(absolute_path):
            raise web.HTTPError(404, "the file of %s vanished", self.request.path)
        return absolute_path

    def compute_etag(self) -> str | None:
        # The release's sha256 names its bytes exactly; no need to hash the file again per request.
        return f'"{self.release.sha256}"' if self.release else None

    def get_content_type(self) -> str:
        return "application/octet-stream"

    def set_extra_headers(self, path: str) -> None:
        assert self.release is not None
        # The ESP cores compare x-MD5 with the md5 of what they flashed and refuse on mismatch.
        self.set_header("x-MD5", self.release.md5)
        self.set_header("Content-Disposition",
                        f'attachment; filename="{self.release.image}-{self.release.version}.bin"')
        self.set_header("Cache-Control", "no-cache")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        # ESP cores and curl read the status; a short text body says why for a human.
        self.error_headers(status_code)
        self.set_header("Content-Type", "text/plain; charset=UTF-8")
        self.finish(f"{status_code} {self._reason}\n")


class SeedFirmwareHandler(FirmwareHandler):
    """``GET|HEAD /firmware.bin``: the seed script's URL, now serving the caller's target release."""

    def head(self) -> Any:  # type: ignore[override]
        return self.get(include_body=False)

    async def get(self, include_body: bool = True) -> None:  # type: ignore[override]
        principal = await self.authenticate()
        if principal.admin:
            raise web.HTTPError(404, "admin asked for /firmware.bin",
                                reason="Not Found: /firmware.bin serves devices; use /fw/<image>/<version>.bin")
        release = self.service.target_release(principal.username)
        if release is None:
            try:
                esp = esp_headers.parse(self.request.headers.get)
            except esp_headers.BadEspHeader as exc:
                raise web.HTTPError(400, str(exc), reason="Bad Request: " + str(exc)) from None
            if esp.platform is not None:
                self.set_status(304)  # an ESP core polling: "no update" is the truthful answer
                return
            raise web.HTTPError(404, "no release targeted at %s", principal.username,
                                reason="Not Found: no release is targeted at this device")
        await self._serve(release, include_body)
