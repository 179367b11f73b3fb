"""Passwords as the config holds them: plain (a ``Secret``) or hashed with PBKDF2-SHA256.

Hash format (Django's shape, so it reads familiar): ``pbkdf2_sha256$<iterations>$<salt>$<hash>``
with salt and hash in unpadded URL-safe base64. ``tinyota hash-password`` makes one.

A fleet of ESP devices authenticates on every download, and a 600k-round PBKDF2 costs ~0.3 s of
CPU, so :class:`Verifier` remembers a keyed digest of each password it has already accepted and
answers repeat checks with one HMAC. The key is random per process; nothing reversible is kept.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
from dataclasses import dataclass

SCHEME = "pbkdf2_sha256"
DEFAULT_ITERATIONS = 600_000  # OWASP's 2023 figure for PBKDF2-HMAC-SHA256


@dataclass(frozen=True)
class Secret:
    """A string that must not be printed: ``repr``/``str`` mask it; ``reveal()`` gets it."""

    _value: str

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None) -> str:
    salt = os.urandom(16) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return f"{SCHEME}${iterations}${_b64(salt)}${_b64(digest)}"


def is_hashed(text: str) -> bool:
    return text.startswith(SCHEME + "$")


def check_hash_format(text: str) -> str | None:
    """Why ``text`` is not a usable hash, or None if it is."""
    parts = text.split("$")
    if len(parts) != 4 or parts[0] != SCHEME:
        return f"expected {SCHEME}$<iterations>$<salt>$<hash>"
    if not parts[1].isdigit() or not 1_000 <= int(parts[1]) <= 10_000_000:
        return "iterations must be a whole number from 1000 to 10000000"
    try:
        if len(_unb64(parts[2])) < 8 or len(_unb64(parts[3])) != 32:
            return "salt must be at least 8 bytes and the hash 32 bytes"
    except (ValueError, TypeError):
        return "salt and hash must be URL-safe base64"
    return None


@dataclass(frozen=True)
class Password:
    """What an account's password is checked against. Either ``plain`` or ``hashed`` is set."""

    plain: Secret | None = None
    hashed: str | None = None

    @classmethod
    def parse(cls, text: str) -> Password:
        return cls(hashed=text) if is_hashed(text) else cls(plain=Secret(text))

    def matches(self, candidate: str) -> bool:
        """Constant-time check (``hmac.compare_digest``) against plain or hashed."""
        if self.hashed is not None:
            _, rounds, salt, want = self.hashed.split("$")
            got = hashlib.pbkdf2_hmac("sha256", candidate.encode("utf-8"), _unb64(salt), int(rounds))
            return hmac.compare_digest(got, _unb64(want))
        assert self.plain is not None
        return hmac.compare_digest(candidate.encode("utf-8"), self.plain.reveal().encode("utf-8"))

    def __repr__(self) -> str:
        return "Password(hashed)" if self.hashed else "Password('***')"


class Verifier:
    """Checks (user, password) against known accounts, caching successful hashed checks.

    The cache maps a username to HMAC(process_key, password) of the last password accepted for it;
    a wrong password never enters it, so a guess still pays the full KDF.
    """

    def __init__(self, accounts: dict[str, Password]) -> None:
        self._accounts = dict(accounts)
        self._key = os.urandom(32)
        # A wrong password for a hashed account costs a KDF run; for a name nobody has it would
        # cost nothing, and the difference tells a prober which names exist. So unknown names
        # are checked against a hash that matches nothing, as costly as the dearest real one.
        rounds = [int(a.hashed.split("$")[1]) for a in self._accounts.values() if a.hashed]
        self._dummy = (Password(hashed=f"{SCHEME}${max(rounds)}${_b64(os.urandom(16))}${_b64(os.urandom(32))}")
                       if rounds else None)
        self._accepted: dict[str, bytes] = {}
        self._lock = threading.Lock()  # the simulator verifies from threads too

    def _tag(self, password: str) -> bytes:
        return hmac.new(self._key, password.encode("utf-8"), hashlib.sha256).digest()

    def is_cheap(self, username: str, password: str) -> bool:
        """Whether check() answers without running the KDF (so it may run on the event loop)."""
        account = self._accounts.get(username)
        if account is None:
            return self._dummy is None
        if account.hashed is None:
            return True
        with self._lock:
            known = self._accepted.get(username)
        return known is not None and hmac.compare_digest(known, self._tag(password))

    def check(self, username: str, password: str) -> bool:
        account = self._accounts.get(username)
        if account is None:
            # Spend comparable time so a probe cannot tell unknown users from wrong passwords.
            if self._dummy is not None:
                self._dummy.matches(password)
            else:
                hmac.compare_digest(self._tag(password), self._key)
            return False
        if account.hashed is None:
            return account.matches(password)
        tag = self._tag(password)
        with self._lock:
            known = self._accepted.get(username)
        if known is not None and hmac.compare_digest(known, tag):
            return True
        if account.matches(password):
            with self._lock:
                self._accepted[username] = tag
            return True
        return False
