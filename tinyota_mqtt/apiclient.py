"""A small client for the admin API, so CLI commands that need the running server can reach it."""

from __future__ import annotations

import http.client
import json
import ssl
from typing import Any
from urllib.parse import urlsplit

from tinyota_mqtt.config.model import Config
from tinyota_mqtt.core.httpauth import basic_header
from tinyota_mqtt.errors import TinyOTAError


def local_url(config: Config) -> str:
    """Where this machine reaches its own server: loopback when it listens on every address."""
    host = config.server.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    scheme = "https" if config.server.tls and config.server.tls.cert else "http"
    return f"{scheme}://{host}:{config.server.port}"


class AdminClient:
    def __init__(self, base_url: str, username: str, password: str, timeout: float = 10.0) -> None:
        self.base = urlsplit(base_url)
        self._auth = basic_header(username, password)
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None) -> Any:
        conn: http.client.HTTPConnection
        host, port = self.base.hostname or "127.0.0.1", self.base.port
        if self.base.scheme == "https":
            conn = http.client.HTTPSConnection(host, port, timeout=self.timeout,
                                               context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(host, port, timeout=self.timeout)
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": self._auth, "Content-Type": "application/json"}
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        except OSError as exc:
            raise TinyOTAError(f"cannot reach the server at {self.base.geturl()}: {exc}",
                               "is `tinyota serve` running? pass --server URL if it listens elsewhere") from None
        finally:
            conn.close()
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = {"error": raw.decode("utf-8", "replace")[:200]}
        if response.status >= 400:
            message = payload.get("error") if isinstance(payload, dict) else None
            hint = payload.get("hint") if isinstance(payload, dict) else None
            raise TinyOTAError(f"server answered {response.status}: {message or response.reason}", hint)
        return payload
