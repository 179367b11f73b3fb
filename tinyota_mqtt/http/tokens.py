"""``GET|HEAD /t/<device>/<token>/firmware[-minimal].bin[.gz]``: downloads for Tasmota devices.

Tasmota can send no credential but its URL (docs/tasmota.md), so the path carries a single-use,
short-lived token minted for one attempt (``fleet/tokens.py``, rules in ``core/tokens.py``). This
route is beside ``/fw/``, not inside it: a token never opens ``/fw/`` or ``/firmware.bin``, and
their Basic Auth is unchanged. It reuses the firmware handler's streaming, headers and chunking
by subclassing it, and differs in three things: who may ask is the token's business; a device
too small for the full image is still sent its headers (Tasmota's two-step upgrade reads them,
sees the size, and asks for the ``-minimal`` file instead); and no line this handler causes,
in the access log or in Tornado's, shows the token whole.
"""

from __future__ import annotations

import logging
from typing import Any

from tornado import web

from tinyota_mqtt.core import esp_headers, tasmota
from tinyota_mqtt.core import tokens as tk
from tinyota_mqtt.http.firmware import FirmwareHandler
from tinyota_mqtt.service import Principal

log = logging.getLogger("tinyota.http")

ROUTE = rf"/t/([A-Za-z0-9_-]+)/([A-Za-z0-9_-]+)/({tasmota.FILE_STEM}|{tasmota.MINIMAL_STEM})((?:\.bin)?(?:\.gz)?)"


class TokenHandler(FirmwareHandler):
    token = ""
    variant = tk.FULL
    in_flight: set[tuple[str, str]]  # (token, variant) being sent now: one request at a time each

    def head(self, device: str, token: str, stem: str, suffix: str) -> Any:  # type: ignore[override]
        return self.get(device, token, stem, suffix, include_body=False)

    async def get(self, device: str, token: str, stem: str, suffix: str,  # type: ignore[override]
                  include_body: bool = True) -> None:
        # Tasmota adds ".gz" to the name on its later retries: the same bytes answer every suffix.
        self.token = token
        self.variant = tk.MINIMAL if stem == tasmota.MINIMAL_STEM else tk.FULL
        busy: set[tuple[str, str]] = self.application.settings.setdefault("token_downloads", set())
        key = (token, self.variant)
        if key in busy:
            raise web.HTTPError(409, "%s: a download with token %s is already under way", device,
                                tk.mask(token), reason="Conflict: this download is already under way")
        found = self.service.token_download(device, token, self.variant)
        if found.release is None:
            raise web.HTTPError(found.status, "%s: %s", device, found.refusal,
                                reason=f"{'Forbidden' if found.status == 403 else 'Not Found'}: {found.refusal}")
        try:
            esp = esp_headers.parse(self.request.headers.get)
        except esp_headers.BadEspHeader as exc:
            raise web.HTTPError(400, str(exc), reason="Bad Request: " + str(exc)) from None
        release = self.release = found.release
        self.principal = Principal(device, admin=False)
        full = self.variant == tk.FULL
        busy.add(key)
        try:
            if full and include_body:
                self.service.download_started(device, release)
            # The firmware handler's writer, sendfile included: StaticFileHandler.get alone leaves a
            # plain connection's body unsent (get_content hands it to _send_file).
            await self._write_release(release, include_body)
        finally:
            busy.discard(key)
        if not include_body or self.get_status() != 200:
            return
        self.client_gone = self.sent < int(self._headers.get("Content-Length", 0))
        if self.client_gone:
            return
        if tk.spends(self.variant, release.size, esp.free_space):
            self.service.token_spent(token, self.variant)
            if full:
                self.service.download_finished(device, release)  # "download+report" confirms on it

    # -- nothing shows the token whole -----------------------------------------------------------

    def log_path(self) -> str:
        return tk.mask_path(self.request.path)

    def _request_summary(self) -> str:
        return f"{self.request.method} {self.log_path()} ({self.request.remote_ip})"

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, web.HTTPError):
            super().log_exception(typ, value, tb)
            return
        # Tornado's own line would print the request, URI and token included.
        log.error("uncaught exception on %s", self._request_summary(), exc_info=(typ, value, tb))

    def set_extra_headers(self, path: str) -> None:
        super().set_extra_headers(path)
        assert self.release is not None
        name = self.request.path.rsplit("/", 1)[-1]
        self.set_header("Content-Disposition", f'attachment; filename="{name}"')
