"""What every TinyOTA handler shares: who is asking, and errors as short JSON or text."""

from __future__ import annotations

import json
import logging
from typing import Any

from tornado import web
from tornado.ioloop import IOLoop

from tinyota_mqtt.core.throttle import AuthThrottle
from tinyota_mqtt.errors import TinyOTAError
from tinyota_mqtt.service import Principal, Service

log = logging.getLogger("tinyota.http")
REALM = 'Basic realm="TinyOTA", charset="UTF-8"'


class BaseHandler(web.RequestHandler):
    service: Service
    principal: Principal | None = None

    def initialize(self, service: Service) -> None:
        self.service = service

    @property
    def throttle(self) -> AuthThrottle:
        """One per application (see make_app), shared by every handler."""
        throttle: AuthThrottle = self.application.settings["throttle"]
        return throttle

    def set_default_headers(self) -> None:
        self.set_header("Server", "TinyOTA")
        self.set_header("X-Content-Type-Options", "nosniff")

    async def authenticate(self) -> Principal:
        """The caller, or a 401 that tells a browser or curl to send credentials."""
        address = self.request.remote_ip or "-"
        wait = self.throttle.retry_after(address)
        if wait > 0:
            self.set_header("Retry-After", str(int(wait) + 1))
            raise web.HTTPError(429, "too many failed logins from %s; refusing for %d s", address, wait)
        header = self.request.headers.get("Authorization")
        if self.service.authentication_is_cheap(header):
            principal = self.service.authenticate(header)
        else:
            principal = await IOLoop.current().run_in_executor(None, self.service.authenticate, header)
        if principal is None:
            if self.request.headers.get("Authorization") is not None:
                self.throttle.failed(address)  # a browser's first credential-less probe is no guess
            # Which part was wrong is deliberately not said; the log line names the user tried.
            raise web.HTTPError(401, "authentication failed for %s", self._user_tried())
        self.principal = principal
        return principal

    async def require_admin(self) -> Principal:
        principal = await self.authenticate()
        if not principal.admin:
            raise web.HTTPError(403, "device %s tried an admin resource", principal.username,
                                reason="Forbidden: device credentials cannot use this")
        return principal

    def check_same_origin(self) -> None:
        """Refuse state changes a browser sends on behalf of another site (CSRF).

        Browsers resend cached Basic credentials to any site that posts to us, so credentials
        alone prove nothing. Browsers also say where a request comes from (Sec-Fetch-Site,
        Origin); curl and scripts send neither and are not affected.
        """
        site = self.request.headers.get("Sec-Fetch-Site")
        if site is not None and site not in ("same-origin", "none"):
            raise web.HTTPError(403, "cross-site request refused (Sec-Fetch-Site: %s)", site)
        origin = self.request.headers.get("Origin")
        if origin is not None and origin.split("://", 1)[-1] != self.request.host:
            raise web.HTTPError(403, "cross-origin request refused (Origin: %s)", origin[:100])

    def _user_tried(self) -> str:
        from tinyota_mqtt.core.httpauth import parse_basic  # only the name, never the password

        creds = parse_basic(self.request.headers.get("Authorization"))
        return repr(creds[0][:64]) if creds else "(no usable credentials)"

    def write_json(self, body: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(body, indent=1, sort_keys=False))

    def error_headers(self, status_code: int) -> None:
        # send_error() clears every header before write_error(), so these are set here.
        if status_code == 401:
            self.set_header("WWW-Authenticate", REALM)
        if status_code == 429:
            wait = self.throttle.retry_after(self.request.remote_ip or "-")
            self.set_header("Retry-After", str(int(wait) + 1))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.error_headers(status_code)
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, TinyOTAError):
            body: dict[str, Any] = {"error": exc.message}
            if exc.hint:
                body["hint"] = exc.hint
        else:
            body = {"error": self._reason}
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(body))

    def _handle_request_exception(self, e: BaseException) -> None:
        # A TinyOTAError is a refusal with advice, not a server fault: answer its status.
        if isinstance(e, TinyOTAError):
            if self._finished:
                return
            log.info("%s %s refused: %s", self.request.method, self.request.path, e.message)
            self.set_status(e.status)
            self.send_error(e.status, exc_info=(type(e), e, e.__traceback__))
            return
        super()._handle_request_exception(e)
