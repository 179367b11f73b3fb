"""The stdlib baseline: what a TinyOTA-style script does, run as its own process.

``http.server.HTTPServer`` (one thread: every device waits for the one before it) or
``ThreadingHTTPServer`` (a thread per device), a ``BaseHTTPRequestHandler`` that checks Basic Auth
and copies the file in 8 KiB chunks, with the default one-line-per-request log on stderr.

One deliberate difference from the seed script: the listen queue is 128 (Tornado's default)
instead of socketserver's 5, so a burst of connects is not decided by SYN retransmission timers
before the handler is ever reached. It makes the baseline look better, not worse.

    python -m bench.stdlib_server --port 8001 --files files.json --users users.json [--threaded]
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hmac
import http.server
import json
import os
from typing import Any, ClassVar

LISTEN_QUEUE = 128
CHUNK = 8 * 1024


class FirmwareHandler(http.server.BaseHTTPRequestHandler):
    files: ClassVar[dict[str, dict[str, Any]]] = {}  # URL path -> {"path": ..., "md5": ...}, set by main()
    users: ClassVar[dict[str, str]] = {}  # user -> password

    def do_GET(self) -> None:
        self._serve(include_body=True)

    def do_HEAD(self) -> None:
        self._serve(include_body=False)

    def _serve(self, include_body: bool) -> None:
        if not self._authorised():
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="firmware"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        entry = self.files.get(self.path)
        if entry is None:
            self.send_error(404)
            return
        size = os.path.getsize(entry["path"])
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.send_header("x-MD5", entry["md5"])
        self.end_headers()
        if include_body:
            with open(entry["path"], "rb") as fh:
                while chunk := fh.read(CHUNK):
                    self.wfile.write(chunk)

    def _authorised(self) -> bool:
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        if scheme != "Basic":
            return False
        try:
            user, _, password = base64.b64decode(token, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        expected = self.users.get(user)
        return expected is not None and hmac.compare_digest(password.encode(), expected.encode())


class SingleServer(http.server.HTTPServer):
    request_queue_size = LISTEN_QUEUE


class ThreadedServer(http.server.ThreadingHTTPServer):
    request_queue_size = LISTEN_QUEUE


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--files", required=True, help="JSON: URL path -> {path, md5}")
    parser.add_argument("--users", required=True, help="JSON: user -> password")
    parser.add_argument("--threaded", action="store_true")
    args = parser.parse_args()
    with open(args.files, encoding="utf-8") as fh:
        FirmwareHandler.files = json.load(fh)
    with open(args.users, encoding="utf-8") as fh:
        FirmwareHandler.users = json.load(fh)
    server_class = ThreadedServer if args.threaded else SingleServer
    with server_class(("127.0.0.1", args.port), FirmwareHandler) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()
