"""What every TinyOTA handler shares: who is asking, and errors as short JSON or text."""

from __future__ import annotations

import json
import logging
from typing import Any, NoReturn

from tornado import web
from tornado.ioloop import IOLoop

from tinyota_mqtt.core import forwarded
from tinyota_mqtt.core.httpauth import parse_basic
from tinyota_mqtt.core.throttle import LoginThrottle
from tinyota_mqtt.errors import TinyOTAError
from tinyota_mqtt.service import Principal, Service

log = logging.getLogger("tinyota.http")
REALM = 'Basic realm="TinyOTA", charset="UTF-8"'


class BaseHandler(web.RequestHandler):
    service: Service
    principal: Principal | None = None
    _client_address: str | None = None
    _retry_after = 1  # seconds, for a 429's Retry-After

    def initialize(self, service: Service) -> None:
        self.service = service

    @property
    def throttle(self) -> LoginThrottle:
        """One per application (see make_app), shared by every handler."""
        throttle: LoginThrottle = self.application.settings["throttle"]
        return throttle

    @property
    def client_address(self) -> str:
        """The client's address: the peer's, or what a trusted proxy says (core/forwarded.py)."""
        if self._client_address is None:
            headers = self.request.headers
            self._client_address = forwarded.client_address(
                self.request.remote_ip or "-", self.service.config.server.trusted_proxies,
                headers.get("X-Forwarded-For"), headers.get("X-Real-IP"))
        return self._client_address

    def set_default_headers(self) -> None:
        self.set_header("Server", "TinyOTA")
        self.set_header("X-Content-Type-Options", "nosniff")

    async def authenticate(self) -> Principal:
        """The caller, or a 401 that tells a browser or curl to send credentials.

        Throttling (core/throttle.py) refuses only what fails or would cost a KDF run it has
        not admitted: credentials that verify cheaply (a plain password, or a hashed one already
        checked since start) always get through, even from an address someone else is
        guessing from.
        """
        header = self.request.headers.get("Authorization")
        creds = parse_basic(header)
        key = (self.client_address, self._account(creds[0] if creds else None))
        over_limit = self.throttle.retry_after(key) > 0
        if self.service.authentication_is_cheap(header):
            principal = self.service.authenticate(header)
            if principal is None and header is not None:
                self.throttle.failed(key)  # a browser's first credential-less probe is no guess
        else:
            reservation = self.throttle.reserve(key)  # counted as a failure from here on
            if reservation is None:
                self._refuse_throttled(key, "KDF checks")
            try:
                principal = await IOLoop.current().run_in_executor(
                    self.application.settings["kdf_pool"], self.service.authenticate, header)
            except BaseException:
                reservation.failed()
                raise
            if principal is None:
                reservation.failed()
            else:
                reservation.succeeded()
        if principal is None:
            if over_limit and header is not None:
                self._refuse_throttled(key, "failed logins")
            # Which part was wrong is deliberately not said; the log line names the user tried.
            raise web.HTTPError(401, "authentication failed for %s", self._user_tried())
        self.principal = principal
        return principal

    def _account(self, user: str | None) -> str:
        """The account a guess is counted against; names nobody has share one key, so spraying
        made-up names earns no fresh allowance."""
        server = self.service.config.server
        return user if user is not None and (user in self.service.config.devices
                                             or user == server.admin.username) else "?"

    def _refuse_throttled(self, key: tuple[str, str], what: str) -> NoReturn:
        wait = self.throttle.retry_after(key) or 1.0  # 1 s: a busy address's checks end soon
        self._retry_after = int(wait) + 1
        raise web.HTTPError(429, "too many %s for %r from %s; refusing for %d s", what, key[1], key[0], wait)

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
            self.set_header("Retry-After", str(self._retry_after))

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
