"""The download tokens in force: minted per attempt, spent per file, kept in memory only.

Only each token's SHA-256 is kept, so this table (or a dump of the process) holds nothing a
device could present. Memory rather than the state file: a token lives minutes and dies with
its attempt; after a restart the device's next fetch is refused, that attempt fails with a
reason the retry rule counts as transient, and its retry gets a fresh token. Nothing on disk
ever holds a usable one. The rules themselves are in ``core/tokens.py``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable

from tinyota_mqtt.core import tokens as tk
from tinyota_mqtt.core.attempts import Attempt
from tinyota_mqtt.store import Release

log = logging.getLogger("tinyota.service")


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "replace")).digest()


class TokenStore:
    def __init__(self, *, clock: Callable[[], float], ttl: float = tk.TTL) -> None:
        self.clock = clock
        self.ttl = ttl
        self._grants: dict[bytes, tk.Grant] = {}
        self._by_attempt: dict[str, bytes] = {}

    def mint(self, attempt: Attempt, release: Release, minimal: Release | None) -> str:
        """A new token for ``attempt``; any earlier one of the same device is revoked."""
        self.revoke_device(attempt.device, "a newer token was minted")
        self._sweep()
        token = secrets.token_urlsafe(tk.TOKEN_BYTES)
        key = _digest(token)
        self._grants[key] = tk.Grant(
            device=attempt.device, image=release.image, version=release.version, sha256=release.sha256,
            attempt=attempt.id, expires=min(attempt.deadline, self.clock() + self.ttl),
            minimal_image=minimal.image if minimal else None, minimal_version=minimal.version if minimal else None)
        self._by_attempt[attempt.id] = key
        log.info("%s: download token %s minted for attempt %s", attempt.device, tk.mask(token), attempt.id)
        return token

    def lookup(self, token: str) -> tk.Grant | None:
        key = _digest(token)
        grant = self._grants.get(key)
        # The dict lookup is on a hash the caller cannot steer; the compare keeps it constant-time.
        if grant is None or not hmac.compare_digest(key, self._by_attempt.get(grant.attempt, b"")):
            return None
        return grant

    def spend(self, token: str, variant: str) -> None:
        key = _digest(token)
        grant = self._grants.get(key)
        if grant is not None:
            self._grants[key] = tk.served(grant, variant)

    def for_attempt(self, attempt_id: str) -> tk.Grant | None:
        key = self._by_attempt.get(attempt_id)
        return self._grants.get(key) if key is not None else None

    def revoke(self, attempt_id: str, why: str) -> None:
        key = self._by_attempt.get(attempt_id)
        if key is not None:  # an attempt's entry goes only with its own grant (_sweep)
            self._grants[key] = tk.revoked(self._grants[key], why)

    def revoke_device(self, device: str, why: str) -> None:
        for key, grant in list(self._grants.items()):
            if grant.device == device:
                self._grants[key] = tk.revoked(grant, why)

    def _sweep(self) -> None:
        """Forget grants long past use: an old token's request then reads "unknown token"."""
        cutoff = self.clock() - self.ttl
        for key, grant in list(self._grants.items()):
            if grant.expires < cutoff:
                del self._grants[key]
                # A device told again (a reconnect, back online) holds a newer token for the same
                # attempt; the attempt's entry is then that token's, which is still good.
                if self._by_attempt.get(grant.attempt) == key:
                    del self._by_attempt[grant.attempt]
