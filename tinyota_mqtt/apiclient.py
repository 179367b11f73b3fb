"""A small client for the admin API, so CLI commands that need the running server can reach it."""

from __future__ import annotations

import hashlib
import http.client
import json
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

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

    def _connection(self) -> http.client.HTTPConnection:
        host, port = self.base.hostname or "127.0.0.1", self.base.port
        if self.base.scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=self.timeout,
                                               context=ssl.create_default_context())
        return http.client.HTTPConnection(host, port, timeout=self.timeout)

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        return self._send(method, path, data, {"Content-Type": "application/json"})

    def upload(self, path: Path, image: str, version: str, notes: str = "", *, replace: bool = False,
               force: bool = False) -> Any:
        """POST /api/releases with the file streamed from disk, its md5 declared for the server to check."""
        digest = hashlib.md5()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 16), b""):
                digest.update(block)
        query = urlencode({"image": image, "version": version, "notes": notes, "md5": digest.hexdigest(),
                           **({"replace": "1"} if replace else {}), **({"force": "1"} if force else {})})
        with open(path, "rb") as fh:
            headers = {"Content-Type": "application/octet-stream", "Content-Length": str(path.stat().st_size)}
            return self._send("POST", f"/api/releases?{query}", fh, headers)

    def _send(self, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
        conn = self._connection()
        headers = {"Authorization": self._auth, **headers}
        try:
            conn.request(method, path, body=body, headers=headers)
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
