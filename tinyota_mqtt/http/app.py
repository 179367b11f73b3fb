"""The Tornado application: routes, limits, and the one access-log line per download."""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Sequence
from concurrent.futures import ThreadPoolExecutor
from ipaddress import ip_address
from typing import Any

from tornado import gen, httpserver, httputil, iostream, web
from tornado.http1connection import HTTP1Connection
from tornado.ioloop import IOLoop

from tinyota_mqtt.config.model import Config, IPNetwork
from tinyota_mqtt.core import forwarded
from tinyota_mqtt.core.throttle import LoginThrottle
from tinyota_mqtt.errors import TinyOTAError
from tinyota_mqtt.http import api, dashboard, firmware, rollouts, tokens
from tinyota_mqtt.http.base import BaseHandler
from tinyota_mqtt.service import Service

access_log = logging.getLogger("tinyota.access")
log = logging.getLogger("tinyota.http")

_ID = r"([A-Za-z0-9_-]+)"
_VERSION = r"([0-9A-Za-z.+-]+)"


KDF_THREADS = 2  # password-hash checks running at once; more wait their turn (see core/throttle.py)


def make_app(service: Service, **settings: Any) -> web.Application:
    ctx = {"service": service}
    settings.setdefault("throttle", LoginThrottle())
    # Its own small pool, not the loop's default executor: however many logins arrive, KDF work
    # never takes more than KDF_THREADS cores, and other run_in_executor users never queue behind it.
    settings.setdefault("kdf_pool", ThreadPoolExecutor(KDF_THREADS, thread_name_prefix="tinyota-kdf"))
    routes: list[Any] = [
        (rf"/fw/{_ID}/{_VERSION}\.bin", firmware.FirmwareHandler, ctx),
        (r"/firmware\.bin", firmware.SeedFirmwareHandler, ctx),
        (tokens.ROUTE, tokens.TokenHandler, ctx),  # Tasmota: a download token instead of Basic Auth
        (r"/healthz", api.HealthHandler, ctx),
        (r"/api/releases", api.ReleasesHandler, ctx),
        (rf"/api/releases/{_ID}/{_VERSION}", api.ReleaseHandler, ctx),
        (r"/api/devices", api.DevicesHandler, ctx),
        (rf"/api/devices/{_ID}", api.DeviceHandler, ctx),
        (rf"/api/devices/{_ID}/history", api.DeviceHistoryHandler, ctx),
        (rf"/api/(devices|groups)/{_ID}/install", api.InstallHandler, ctx),
        (rf"/api/(devices|groups)/{_ID}/cancel", api.CancelHandler, ctx),
        *rollouts.routes(ctx),
        (r"/api/events", dashboard.EventStream, ctx),
        (r"/", dashboard.FleetPage, ctx),
        (r"/releases", dashboard.ReleasesPage, ctx),
        (rf"/devices/{_ID}", dashboard.DevicePage, ctx),
        (r"/icon\.svg", dashboard.IconHandler),  # Home Assistant's entity picture: no login
        (r"/static/(.+)", dashboard.AssetHandler, {**ctx, "path": str(dashboard.STATIC)}),
    ]
    extra_routes = settings.pop("extra_routes", [])
    log_on = service.config.server.access_log
    return web.Application(extra_routes + routes, log_function=lambda h: _log_request(h, log_on),
                           **settings)


def _log_request(handler: web.RequestHandler, enabled: bool) -> None:
    if not enabled:
        return
    status = handler.get_status()
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    seconds = handler.request.request_time()
    ip = handler.client_address if isinstance(handler, BaseHandler) else handler.request.remote_ip
    if isinstance(handler, firmware.FirmwareHandler) and handler.release is not None:
        who = handler.principal.username if handler.principal else "-"
        r = handler.release
        outcome = " stalled" if handler.stalled else " client-disconnected" if handler.client_gone else ""
        via = f" via={handler.via}" if handler.via else ""  # sendfile, or copy (TLS)
        access_log.log(level, "download device=%s image=%s version=%s status=%d bytes=%d seconds=%.2f "
                       "ip=%s%s%s", who, r.image, r.version, status, handler.sent, seconds, ip, via, outcome)
        return
    # Never the query string: an upload's notes or a mistaken ?password= stays out of the log.
    # A handler whose path holds a secret (a download token) says how to show it.
    path = handler.log_path() if isinstance(handler, tokens.TokenHandler) else handler.request.path
    access_log.log(level, "%d %s %s %.1fms ip=%s", status, handler.request.method, path, 1000 * seconds, ip)


class CappedHTTPServer(httpserver.HTTPServer):
    """An HTTPServer that turns connections away past ``max_connections``, or past
    ``per_address`` from one address, and cuts request bodies that stall.

    Each download holds a socket for as long as the device takes; without a cap an idle flood
    could exhaust file descriptors and starve the devices that are really updating, and without
    a per-address cap one host could take every slot (2,000 idle sockets from one address kept
    every download at 503). Trusted proxies are exempt: all their clients share their address.
    """

    def initialize(self, *args: Any, max_connections: int = 2000, per_address: int = 100,
                   exempt: Sequence[IPNetwork] = (), body_idle_timeout: float | None = None,
                   **kwargs: Any) -> None:
        super().initialize(*args, **kwargs)
        self.max_connections = max_connections
        self.per_address = per_address
        self.exempt = tuple(exempt)
        self.body_idle_timeout = body_idle_timeout
        self._per_address: dict[str, int] = {}

    def handle_stream(self, stream: iostream.IOStream, address: tuple[Any, ...]) -> None:
        # The same rule Tornado uses for request.remote_ip, so on_close finds the same key.
        ip = address[0] if stream.socket is not None and stream.socket.family in (
            socket.AF_INET, socket.AF_INET6) else "0.0.0.0"
        held = self._per_address.get(ip, 0)
        if len(self._connections) >= self.max_connections or (
                held >= self.per_address and not forwarded.is_trusted(forwarded.parse_address(ip), self.exempt)):
            stream.write(b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\n"
                         b"Retry-After: 5\r\nConnection: close\r\n\r\n").add_done_callback(
                             lambda _f: stream.close())
            return
        self._per_address[ip] = held + 1
        super().handle_stream(stream, address)

    def on_close(self, server_conn: object) -> None:
        super().on_close(server_conn)
        ip = getattr(getattr(server_conn, "context", None), "remote_ip", None)
        left = self._per_address.get(ip, 0) - 1 if ip is not None else 0
        if ip is not None and left > 0:
            self._per_address[ip] = left
        elif ip is not None:
            self._per_address.pop(ip, None)

    def start_request(self, server_conn: object,
                      request_conn: httputil.HTTPConnection) -> httputil.HTTPMessageDelegate:
        delegate = super().start_request(server_conn, request_conn)
        if self.body_idle_timeout is None or not isinstance(request_conn, HTTP1Connection):
            return delegate
        return _IdleBody(delegate, request_conn, self.body_idle_timeout)


class _IdleBody(httputil.HTTPMessageDelegate):
    """Cuts a request whose body stops arriving for ``timeout`` seconds; a body that keeps
    coming is never cut, however long it takes.

    Tornado's ``body_timeout`` bounds the *whole* body instead, which cut a slow but steady
    upload at 60 s. The connection is closed, so the handler's on_connection_close discards
    what it had (an upload removes its ``.part``).
    """

    def __init__(self, inner: httputil.HTTPMessageDelegate, conn: HTTP1Connection, timeout: float) -> None:
        self.inner, self.conn, self.timeout = inner, conn, timeout
        self.last = 0.0
        self.timer: object | None = None
        self.done = False
        self.loop = IOLoop.current()

    def headers_received(self, start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
                         headers: httputil.HTTPHeaders) -> Awaitable[None] | None:
        ready = self.inner.headers_received(start_line, headers)
        if headers.get("Content-Length", "0") == "0" and "Transfer-Encoding" not in headers:
            return ready
        if ready is None:
            self._arm()
            return None
        # A streaming handler reads no body until its prepare() is done (the login may wait for a
        # KDF slot): the client's silence counts from then on, not the server's own delay.
        future = gen.convert_yielded(ready)
        self.loop.add_future(future, lambda _f: self._arm())
        return future

    def _arm(self) -> None:
        if not self.done:
            self.last = self.loop.time()
            self.timer = self.loop.call_later(self.timeout, self._check)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        self.last = self.loop.time()
        return self.inner.data_received(chunk)

    def finish(self) -> None:
        self._disarm()
        self.inner.finish()

    def on_connection_close(self) -> None:
        self._disarm()
        self.inner.on_connection_close()

    def _disarm(self) -> None:
        self.done = True
        if self.timer is not None:
            self.loop.remove_timeout(self.timer)
            self.timer = None

    def _check(self) -> None:
        # One timer per body, re-armed for what is left rather than reset on every chunk.
        idle = self.loop.time() - self.last
        if idle < self.timeout:
            self.timer = self.loop.call_later(self.timeout - idle, self._check)
            return
        self.timer = None
        log.warning("request body from %s stalled for %.0f s; closing the connection",
                    self.conn.context.remote_ip if self.conn.context else "-", idle)  # type: ignore[attr-defined]
        self.conn.stream.close()


def start_http(service: Service, app: web.Application, host: str, port: int,
               ssl_options: Any = None) -> tuple[CappedHTTPServer, list[socket.socket]]:
    server_config = service.config.server
    limits = server_config.limits
    server = CappedHTTPServer(
        app, ssl_options=ssl_options, max_connections=limits.max_connections,
        per_address=limits.max_connections_per_address, exempt=server_config.trusted_proxies,
        max_header_size=limits.max_header_bytes, max_body_size=limits.max_upload_bytes,
        idle_connection_timeout=limits.idle_timeout, body_idle_timeout=limits.idle_timeout,
    )
    from tornado.netutil import bind_sockets

    # A release makes a whole group connect at once. Tornado's default listen queue (128) overflows
    # then, and the kernel drops the extra SYNs: those devices wait out 1 s, 3 s, 7 s retransmits.
    # Queue as many as we would serve (the kernel caps it at net.core.somaxconn).
    sockets = bind_sockets(port, address=host, backlog=limits.max_connections)
    server.add_sockets(sockets)
    return server, sockets


WEAK_ADMIN_PASSWORDS = ("admin", "")


def refuse_default_admin(config: Config, host: str) -> None:
    """Refuse to listen on ``host`` beyond this machine while the admin password is the default.

    Without ``server.admin`` the account is admin/admin: fine for the demo on 127.0.0.1, an open
    door on 0.0.0.0. Refusing (rather than generating one) keeps the password where the operator
    put it and the same across restarts. Called before anything starts, so a refusal leaves
    nothing half-running. ``host`` is resolved the way bind_sockets resolves it.
    """
    password = config.server.admin.password.plain
    if password is None or password.reveal() not in WEAK_ADMIN_PASSWORDS:
        return
    try:
        found = socket.getaddrinfo(host or None, 0, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    except socket.gaierror:
        return  # binding fails too, with its own message
    addresses = [str(info[4][0]) for info in found]
    exposed = [a for a in addresses if not ip_address(a.partition("%")[0]).is_loopback]
    if exposed:
        raise TinyOTAError(
            f"refusing to listen on {exposed[0]} with the default admin password "
            f"(user {config.server.admin.username!r}): anyone on the network could upload firmware",
            "set server.admin.password in the config, e.g. password: ${TINYOTA_ADMIN_PASSWORD} with "
            "TINYOTA_ADMIN_PASSWORD set in the environment (or listen on 127.0.0.1 only)")
