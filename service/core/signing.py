"""Standard Webhooks signatures (https://www.standardwebhooks.com), for sending and checking.

A message is signed as ``base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}"))`` where the key is
the base64 part of a ``whsec_...`` secret; the ``webhook-signature`` header holds one or more
space-separated ``v1,<signature>`` entries so a secret can be rotated without downtime.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (a bare secret is used as UTF-8 bytes)."""
    if secret.startswith(SECRET_PREFIX):
        encoded = secret.removeprefix(SECRET_PREFIX)
        return base64.b64decode(encoded + "=" * (-len(encoded) % 4))  # padding is optional
    return secret.encode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` signature of one message."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers. There is no unsigned form: a message without a
    secret is not sent at all (workers/notify/callbacks.py)."""
    if not secret:
        raise ValueError("a Standard Webhooks message needs a secret")
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


def verify(secrets: list[str], msg_id: str, timestamp: int, body: bytes, header: str) -> bool:
    """True when any ``v1`` signature in ``header`` matches any of ``secrets``."""
    offered = [part.partition(",")[2] for part in header.split() if part.startswith("v1,")]
    for secret in secrets:
        expected = sign(secret, msg_id, timestamp, body).partition(",")[2]
        if any(hmac.compare_digest(expected, candidate) for candidate in offered):
            return True
    return False
