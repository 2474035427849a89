"""Is a webhook delivery authentic and fresh? The signature checks of the three source kinds.

- Jira (``X-Hub-Signature: sha256=<hex HMAC-SHA256 of the raw body>``) signs the body only, so
  everything replay protection rests on comes from the body: its own ``timestamp`` (epoch
  milliseconds, which Jira puts in every webhook payload) must be within the tolerance, and the
  dedupe key is the SHA-256 of the raw body (:func:`jira_delivery_key`). The unsigned
  ``X-Atlassian-Webhook-Identifier`` header is not used for anything.
- Standard Webhooks sign ``{webhook-id}.{webhook-timestamp}.{body}``: the id is the dedupe key
  and the timestamp must be within the tolerance.

Both tolerances are ``PROVISIONER_WEBHOOK_TOLERANCE_S`` (5 minutes by default). Comparisons are
constant time; a rejection carries a reason for the log, never a secret or a signature.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Any

from service.core import signing

__all__ = [
    "MAX_ID_CHARS",
    "Rejected",
    "check_jira_freshness",
    "jira_delivery_key",
    "verify_hub_signature",
    "verify_standard",
]

MAX_ID_CHARS = 256
#: A body's ``timestamp`` beyond this (year 33658 in ms) is not a real epoch-ms value.
_MAX_EPOCH_MS = 10**15


class Rejected(Exception):
    """A delivery that is not authentic (bad or missing signature, stale timestamp)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def verify_hub_signature(secrets: tuple[str, ...], body: bytes, header: str | None) -> None:
    """Check ``sha256=<hex>`` (HMAC-SHA256 of the raw body) against every secret."""
    if not header:
        raise Rejected("missing signature")
    scheme, _, offered = header.strip().partition("=")
    if scheme.lower() != "sha256" or not offered:
        raise Rejected("unsupported signature scheme")
    offered_b = offered.strip().lower().encode()
    ok = False
    for secret in secrets:
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest().encode()
        ok |= hmac.compare_digest(expected, offered_b)
    if not ok:
        raise Rejected("signature mismatch")


def check_jira_freshness(payload: Any, *, tolerance_s: int, now: float | None = None) -> None:
    """The signed body's own ``timestamp`` (epoch ms) must be within ``tolerance_s`` of now.

    Call it with the parsed body after the signature check: the timestamp is only worth
    something because the signature covers it. A body without an integer ``timestamp`` is
    refused like a stale one."""
    stamp = payload.get("timestamp") if isinstance(payload, dict) else None
    if isinstance(stamp, bool) or not isinstance(stamp, int) or not 0 < stamp < _MAX_EPOCH_MS:
        raise Rejected("body has no integer timestamp (epoch milliseconds)")
    current = time.time() if now is None else now
    if abs(current - stamp / 1000) > tolerance_s:
        raise Rejected("timestamp outside the tolerance")


def jira_delivery_key(body: bytes) -> str:
    """The dedupe key of a Jira delivery: what the signature covers, hashed."""
    return "sha256:" + hashlib.sha256(body).hexdigest()


def verify_standard(
    secrets: tuple[str, ...],
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_s: int = 300,
    now: float | None = None,
) -> str:
    """Check Standard Webhooks headers; return the ``webhook-id`` (the dedupe key)."""
    msg_id = headers.get("webhook-id", "")
    stamp = headers.get("webhook-timestamp", "")
    signature = headers.get("webhook-signature", "")
    if not msg_id or not stamp or not signature:
        raise Rejected("missing webhook-id, webhook-timestamp or webhook-signature")
    if len(msg_id) > MAX_ID_CHARS or not msg_id.isprintable():
        raise Rejected("invalid webhook-id")
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
        raise Rejected("invalid webhook-timestamp")
    timestamp = int(stamp)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise Rejected("timestamp outside the tolerance")
    try:
        ok = signing.verify(list(secrets), msg_id, timestamp, body, signature)
    except ValueError:  # a whsec_ secret that is not base64 (config error): treat as mismatch
        ok = False
    if not ok:
        raise Rejected("signature mismatch")
    return msg_id
