"""Signed announcements (optional): ECDSA P-256 with SHA-256 over each announcement's manifest.

Anyone who can publish on the broker could announce a URL of their choosing; a device that knows
the server's public key can refuse an announcement the server did not sign. The signature covers
``Announcement.manifest()``, which names the device and the attempt, so a signature cannot be
replayed to another device, version or attempt.

Why P-256 and not Ed25519: the ESP cores ship it. BearSSL (inside the ESP8266 core) and mbedTLS
(inside arduino-esp32) both verify ECDSA P-256; neither verifies Ed25519 without an extra library.

Wire formats, chosen for the device's sake:
- signature: base64 of the 64-byte raw ``r || s`` (IEEE P1363), which BearSSL's
  ``br_ecdsa_i15_vrfy_raw`` takes as is (no DER parser on the device);
- public key: the 65-byte uncompressed point ``04 || X || Y`` as 130 hex digits, pasted into the
  device's config.h.

Needs the ``cryptography`` package (``tinyota-mqtt[signing]``).
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path
from typing import Any

from tinyota_mqtt.errors import TinyOTAError

SIGNATURE_BYTES = 64
PUBLIC_KEY_HEX = 130
MAX_REMEMBERED = 4096  # signatures kept where RFC 6979 is unavailable: far more than open attempts


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives.asymmetric import ec
    except ImportError:
        raise TinyOTAError("server.signing_key is set but the cryptography package is not installed",
                           "pip install 'tinyota-mqtt[signing]'") from None
    return ec


class Signer:
    def __init__(self, private_key: Any) -> None:
        self._key = private_key
        # Equal announcements must be byte-equal (re-publishing after a reconnect, and the check
        # that the broker still holds what we published, compare bytes), but ECDSA draws a random
        # nonce. RFC 6979 derives it from the key and message instead; where `cryptography` (before
        # 44) or its OpenSSL (before 3.2) lacks that, signatures already made are reused.
        self._deterministic = True
        self._made: dict[bytes, str] = {}

    @classmethod
    def load(cls, path: Path) -> Signer:
        ec = _crypto()
        from cryptography.hazmat.primitives import serialization

        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise TinyOTAError(f"cannot load the signing key {path}: {exc}",
                               "make one with `tinyota keygen FILE`") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
            raise TinyOTAError(f"{path} is not an ECDSA P-256 private key (keys from an older tinyota keygen "
                               "were Ed25519, which devices cannot check)",
                               "make a new one with `tinyota keygen FILE` and give devices its public key")
        return cls(key)

    def sign(self, message: bytes) -> str:
        """base64 of the raw 64-byte r || s over SHA-256(message); the same for the same message."""
        ec = _crypto()
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        if not self._deterministic and message in self._made:
            return self._made[message]
        der = None
        if self._deterministic:
            try:
                der = self._key.sign(message, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
            except (TypeError, UnsupportedAlgorithm):  # TypeError: no such keyword yet
                self._deterministic = False
        if der is None:
            der = self._key.sign(message, ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        sig = base64.b64encode(r.to_bytes(32, "big") + s.to_bytes(32, "big")).decode("ascii")
        if not self._deterministic:
            if len(self._made) >= MAX_REMEMBERED:  # bounded: the oldest go first
                del self._made[next(iter(self._made))]
            self._made[message] = sig
        return sig

    @property
    def public_key(self) -> str:
        """The uncompressed point (04 || X || Y) as 130 lower-case hex digits: what a device needs."""
        from cryptography.hazmat.primitives import serialization

        raw = self._key.public_key().public_bytes(serialization.Encoding.X962,
                                                  serialization.PublicFormat.UncompressedPoint)
        return str(raw.hex())


def generate(path: Path) -> Signer:
    """Write a new private key (mode 0600, never overwriting) and return its signer."""
    ec = _crypto()
    from cryptography.hazmat.primitives import serialization

    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise TinyOTAError(f"{path} exists already; not overwriting a key devices may trust") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    return Signer(key)


class Verifier:
    """What a device does, in Python: the simulator, tests, and devices that run Python."""

    def __init__(self, public_key_hex: str) -> None:
        ec = _crypto()
        try:
            raw = bytes.fromhex(public_key_hex)
            if len(public_key_hex) != PUBLIC_KEY_HEX or raw[:1] != b"\x04":
                raise ValueError("not 130 hex digits starting with 04")
            self._key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
        except ValueError as exc:
            raise TinyOTAError(f"bad announcement public key: {exc}",
                               "use the 130 hex digits `tinyota keygen` printed (or /healthz shows)") from None

    def verify(self, message: bytes, signature_b64: str) -> bool:
        ec = _crypto()
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

        try:
            raw = base64.b64decode(signature_b64, validate=True)
        except (binascii.Error, ValueError):
            return False
        if len(raw) != SIGNATURE_BYTES:
            return False
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        try:
            self._key.verify(der, message, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True


def verify(public_key_hex: str, message: bytes, signature_b64: str) -> bool:
    return Verifier(public_key_hex).verify(message, signature_b64)
