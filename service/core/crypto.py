"""Encryption at rest for app credentials held in Redis between intake and the worker.

Keys come from ``PROVISIONER_ENCRYPTION_KEY``: a comma-separated list of Fernet keys, the first
used to encrypt and all tried to decrypt, so a key is rotated by putting the new one first and
dropping the old one once no queued request still uses it.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from service.core.errors import ConfigError, ProvisionerError
from service.core.request import Credential


class CredentialCipher:
    """Encrypts and decrypts a request's credential list as one Fernet token."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        try:
            self._fernet = MultiFernet([Fernet(k.encode()) for k in keys])
            self._mac_key = hashlib.sha256(b"provisioner-fingerprint:" + keys[0].encode()).digest()
        except (ValueError, TypeError) as e:
            raise ConfigError(
                "PROVISIONER_ENCRYPTION_KEY: each key must be 32 url-safe base64-encoded bytes "
                "(make one with `provisioner keys encryption`)"
            ) from e

    def mac(self, data: bytes) -> str:
        """A keyed hash (HMAC-SHA256 under a key derived from the first encryption key): lets
        a body holding secrets be compared later without storing anything guessable."""
        return hmac.new(self._mac_key, data, hashlib.sha256).hexdigest()

    def encrypt(self, credentials: list[Credential]) -> bytes:
        """Encrypt the pairs, values included, for storage."""
        plain = [{"key": c.key, "value": c.value.get_secret_value()} for c in credentials]
        return self._fernet.encrypt(json.dumps(plain).encode())

    def decrypt(self, token: bytes) -> list[Credential]:
        """Decrypt what :meth:`encrypt` produced; a token no key opens raises ProvisionerError."""
        try:
            plain = json.loads(self._fernet.decrypt(token))
        except InvalidToken as e:
            raise ProvisionerError(
                "stored credentials cannot be decrypted with any configured encryption key"
            ) from e
        return [Credential.model_validate(item) for item in plain]


def new_encryption_key() -> str:
    """A fresh Fernet key for ``PROVISIONER_ENCRYPTION_KEY``."""
    return Fernet.generate_key().decode()
