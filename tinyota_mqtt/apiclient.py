"""A small client for the admin API: how every CLI command that touches live state reaches the server.

``find_server`` says whether a server answers where the config (or ``--server``) says; the CLI
then asks it, and reads the files itself only when nothing answers.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import select
import socket
import ssl
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote, urlencode, urlsplit

from tinyota_mqtt.config.model import Config
from tinyota_mqtt.core.httpauth import basic_header
from tinyota_mqtt.errors import TinyOTAError

PASSWORD_ENV = "TINYOTA_ADMIN_PASSWORD"
PROBE_SECONDS = 2.0  # a TCP connect; loopback refuses at once, a LAN address may be slow to say so


def local_url(config: Config) -> str:
    """Where this machine reaches its own server: loopback when it listens on every address."""
    host = config.server.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if config.server.tls and config.server.tls.cert else "http"
    return f"{scheme}://{host}:{config.server.port}"


def candidates(config: Config) -> list[str]:
    """Where the server of this config may answer: its listen address, then its public URL."""
    found = [local_url(config)]
    public = config.server.public_url.rstrip("/")
    if public not in found:
        found.append(public)
    return found


def answers(url: str, timeout: float = PROBE_SECONDS) -> bool:
    """True when something accepts a TCP connection at ``url``'s host and port."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", port), timeout):
            return True
    except OSError:
        return False


def admin_password(config: Config) -> str:
    admin = config.server.admin
    if admin.password.plain is not None:
        return admin.password.plain.reveal()
    from_env = os.environ.get(PASSWORD_ENV)
    if from_env is None:
        raise TinyOTAError("the admin password in the config is hashed, so the CLI cannot log in with it",
                           f"set {PASSWORD_ENV} in the environment")
    return from_env


def find_server(config: Config, url: str | None) -> AdminClient | None:
    """A client for the server that answers, or None when none does and none was named."""
    if url is not None:
        if not answers(url):
            raise TinyOTAError(f"no server answers at {url}",
                               "is `tinyota serve` running there? check the URL and port")
        return AdminClient(url, config.server.admin.username, admin_password(config))
    for candidate in candidates(config):
        if answers(candidate):
            return AdminClient(candidate, config.server.admin.username, admin_password(config))
    return None


class _Early:
    """A final answer the server sent instead of ``100 Continue``: the upload was refused up front."""

    def __init__(self, status: int, reason: str, body: bytes) -> None:
        self.status, self.reason, self.body = status, reason, body


class AdminClient:
    def __init__(self, base_url: str, username: str, password: str, timeout: float = 30.0) -> None:
        self.url = base_url.rstrip("/")
        self.base = urlsplit(self.url)
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

    def get(self, path: str, **query: str | int | None) -> Any:
        args = {k: str(v) for k, v in query.items() if v is not None}
        return self.request("GET", path + (f"?{urlencode(args)}" if args else ""))

    @staticmethod
    def quoted(name: str) -> str:
        return quote(name, safe="")

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

    def _send(self, method: str, path: str, body: bytes | BinaryIO | None, headers: dict[str, str]) -> Any:
        conn = self._connection()
        streamed = body is not None and not isinstance(body, bytes)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            for name, value in {"Authorization": self._auth, **headers}.items():
                conn.putheader(name, value)
            if isinstance(body, bytes) or (body is None and method in ("POST", "PUT", "DELETE")):
                conn.putheader("Content-Length", str(len(body or b"")))
            if streamed:
                # The server refuses a release it cannot take (exists, too large, bad login) before
                # it reads the body, then closes. Without asking first, that answer is lost to a
                # "Broken pipe" while the client is still sending.
                conn.putheader("Expect", "100-continue")
            conn.endheaders(body if isinstance(body, bytes) else None)
            early = self._await_continue(conn) if streamed else None
            if early is not None:
                return self._answer(early.status, early.reason, early.body)
            if streamed:
                # If it stops reading mid-body, its answer (read next) says why.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    conn.send(body)  # type: ignore[arg-type]
            response = conn.getresponse()
            raw = response.read()
        except OSError as exc:
            raise TinyOTAError(f"lost the connection to the server at {self.url}: {exc}",
                               "is `tinyota serve` still running? (--debug shows more)") from None
        finally:
            conn.close()
        return self._answer(response.status, response.reason, raw)

    def _await_continue(self, conn: http.client.HTTPConnection) -> _Early | None:
        """Wait for ``100 Continue``; return the final answer instead if the server sends one."""
        sock = conn.sock
        assert sock is not None
        ready, _, _ = select.select([sock], [], [], self.timeout)
        if not ready:
            return None  # a server that ignores Expect: send the body after all (RFC 9110 §10.1.1)
        # Unbuffered, so nothing after the interim answer is read away from http.client.
        fp = sock.makefile("rb", buffering=0)
        line = _readline(fp)
        parts = line.decode("latin-1").split(None, 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise OSError(f"not an HTTP answer: {line[:40]!r}")
        status = int(parts[1])
        head = http.client.parse_headers(fp)
        if status == 100:
            return None
        length = head.get("Content-Length")
        raw = _read_exactly(fp, int(length)) if length and length.isdigit() else fp.read() or b""
        return _Early(status, parts[2].strip() if len(parts) > 2 else "", raw)

    def _answer(self, status: int, reason: str, raw: bytes) -> Any:
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            raise ApiError(status, f"the server at {self.url} answered {status} {reason} with something that is "
                           "not TinyOTA's JSON", "is it a TinyOTA server? --server URL names the right one") from None
        if status < 400:
            return payload
        message = payload.get("error") if isinstance(payload, dict) else None
        hint = payload.get("hint") if isinstance(payload, dict) else None
        if status == 401:
            message = "the server refused the admin login"
            hint = (f"server.admin in this config (or {PASSWORD_ENV}) must be the admin account of the "
                    f"server at {self.url}")
        elif status == 404 and message in (None, "Not Found"):
            message = "the server does not know this request"
            hint = f"is {self.url} a TinyOTA server of this version?"
        raise ApiError(status, f"{message or reason} (the server at {self.url} answered {status})", hint)


class ApiError(TinyOTAError):
    def __init__(self, status: int, message: str, hint: str | None) -> None:
        super().__init__(message, hint)
        self.status = status


def _readline(fp: Any) -> bytes:
    line = b""
    while not line.endswith(b"\n") and len(line) < 8192:
        byte = fp.read(1)
        if not byte:
            break
        line += byte
    return line


def _read_exactly(fp: Any, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = fp.read(size - len(data))
        if not chunk:
            break
        data += chunk
    return data
