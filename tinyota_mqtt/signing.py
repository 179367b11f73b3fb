"""Signed announcements (optional): Ed25519 over each announcement's manifest.

Anyone who can publish on the broker could announce a URL of their choosing; a device that knows
the server's public key can refuse an announcement the server did not sign. The signature covers
``Announcement.manifest()``; with it, the sha256 the device checks after downloading ties the
image itself to this server. Needs the ``cryptography`` package (``tinyota-mqtt[signing]``).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

from tinyota_mqtt.errors import TinyOTAError


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise TinyOTAError("server.signing_key is set but the cryptography package is not installed",
                           "pip install 'tinyota-mqtt[signing]'") from None
    return serialization, ed25519


class Signer:
    def __init__(self, private_key: Any) -> None:
        self._key = private_key

    @classmethod
    def load(cls, path: Path) -> Signer:
        serialization, ed25519 = _crypto()
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise TinyOTAError(f"cannot load the signing key {path}: {exc}",
                               "make one with `tinyota keygen FILE`") from None
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise TinyOTAError(f"{path} is not an Ed25519 private key", "make one with `tinyota keygen FILE`")
        return cls(key)

    def sign(self, message: bytes) -> str:
        return base64.b64encode(self._key.sign(message)).decode("ascii")

    @property
    def public_key(self) -> str:
        """The raw 32-byte public key, base64: what a device needs to verify."""
        serialization, _ = _crypto()
        raw = self._key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return base64.b64encode(raw).decode("ascii")


def generate(path: Path) -> Signer:
    """Write a new private key (mode 0600, never overwriting) and return its signer."""
    serialization, ed25519 = _crypto()
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise TinyOTAError(f"{path} exists already; not overwriting a key devices may trust") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    return Signer(key)


def verify(public_key_b64: str, message: bytes, signature_b64: str) -> bool:
    """What a device does, in Python: for tests and for devices that run Python."""
    _, ed25519 = _crypto()
    from cryptography.exceptions import InvalidSignature

    try:
        public = ed25519.Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64))
        public.verify(base64.b64decode(signature_b64), message)
    except (InvalidSignature, ValueError):
        return False
    return True
