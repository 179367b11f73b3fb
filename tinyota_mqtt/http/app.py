"""The Tornado application: routes, limits, and the one access-log line per download."""

from __future__ import annotations

import logging
import socket
from typing import Any

from tornado import httpserver, iostream, web

from tinyota_mqtt.core.throttle import AuthThrottle
from tinyota_mqtt.http import api, dashboard, firmware
from tinyota_mqtt.service import Service

access_log = logging.getLogger("tinyota.access")

_ID = r"([A-Za-z0-9_-]+)"
_VERSION = r"([0-9A-Za-z.+-]+)"


def make_app(service: Service, **settings: Any) -> web.Application:
    ctx = {"service": service}
    settings.setdefault("throttle", AuthThrottle())
    routes: list[Any] = [
        (rf"/fw/{_ID}/{_VERSION}\.bin", firmware.FirmwareHandler, ctx),
        (r"/firmware\.bin", firmware.SeedFirmwareHandler, ctx),
        (r"/healthz", api.HealthHandler, ctx),
        (r"/api/releases", api.ReleasesHandler, ctx),
        (rf"/api/releases/{_ID}/{_VERSION}", api.ReleaseHandler, ctx),
        (r"/api/devices", api.DevicesHandler, ctx),
        (rf"/api/devices/{_ID}", api.DeviceHandler, ctx),
        (rf"/api/devices/{_ID}/history", api.DeviceHistoryHandler, ctx),
        (rf"/api/(devices|groups)/{_ID}/install", api.InstallHandler, ctx),
        (rf"/api/(devices|groups)/{_ID}/cancel", api.CancelHandler, ctx),
        (r"/api/events", dashboard.EventStream, ctx),
        (r"/", dashboard.FleetPage, ctx),
        (r"/releases", dashboard.ReleasesPage, ctx),
        (rf"/devices/{_ID}", dashboard.DevicePage, ctx),
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
    if isinstance(handler, firmware.FirmwareHandler) and handler.release is not None:
        who = handler.principal.username if handler.principal else "-"
        r = handler.release
        outcome = " client-disconnected" if handler.client_gone else ""
        access_log.log(level, "download device=%s image=%s version=%s status=%d bytes=%d seconds=%.2f "
                       "ip=%s%s", who, r.image, r.version, status, handler.sent, seconds,
                       handler.request.remote_ip, outcome)
        return
    # Never the query string: an upload's notes or a mistaken ?password= stays out of the log.
    access_log.log(level, "%d %s %s %.1fms ip=%s", status, handler.request.method,
                   handler.request.path, 1000 * seconds, handler.request.remote_ip)


class CappedHTTPServer(httpserver.HTTPServer):
    """An HTTPServer that turns connections away past ``max_connections``.

    Each download holds a socket for as long as the device takes; without a cap an idle flood
    could exhaust file descriptors and starve the devices that are really updating.
    """

    def initialize(self, *args: Any, max_connections: int = 2000, **kwargs: Any) -> None:
        super().initialize(*args, **kwargs)
        self.max_connections = max_connections

    def handle_stream(self, stream: iostream.IOStream, address: tuple[Any, ...]) -> None:
        if len(self._connections) >= self.max_connections:
            stream.write(b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\n"
                         b"Retry-After: 5\r\nConnection: close\r\n\r\n").add_done_callback(
                             lambda _f: stream.close())
            return
        super().handle_stream(stream, address)


def start_http(service: Service, app: web.Application, host: str, port: int,
               ssl_options: Any = None) -> tuple[CappedHTTPServer, list[socket.socket]]:
    limits = service.config.server.limits
    server = CappedHTTPServer(
        app, ssl_options=ssl_options, max_connections=limits.max_connections,
        max_header_size=limits.max_header_bytes, max_body_size=limits.max_upload_bytes,
        idle_connection_timeout=limits.idle_timeout, body_timeout=limits.idle_timeout,
    )
    from tornado.netutil import bind_sockets

    # A release makes a whole group connect at once. Tornado's default listen queue (128) overflows
    # then, and the kernel drops the extra SYNs: those devices wait out 1 s, 3 s, 7 s retransmits.
    # Queue as many as we would serve (the kernel caps it at net.core.somaxconn).
    sockets = bind_sockets(port, address=host, backlog=limits.max_connections)
    server.add_sockets(sockets)
    return server, sockets
