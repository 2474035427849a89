"""Idempotency-Key claims and the request fingerprints they compare.

A key holds the first response's status and request id, so a replay gets the same answer and a
different body under the same key is told apart. The accept script reads and completes it in
the same round trip that stores the request (:meth:`~service.core.store.Store.accept_keyed`),
so there is no pending state to expire and nothing to release when a request is refused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from service.core.crypto import CredentialCipher
from service.core.store_base import StoreBase


@dataclass(frozen=True, slots=True)
class IdempotencyEntry:
    """What an Idempotency-Key already stands for."""

    fingerprint: str
    # None: claimed pending by an API before the accept script took the key over (a rolling
    # upgrade); such a claim expires within 30 s.
    status: int | None
    request_id: str | None

    @classmethod
    def from_json(cls, raw: str | bytes) -> IdempotencyEntry:
        """Parse a key's stored value (``{"fp", "status", "id"}``)."""
        data = json.loads(raw)
        return cls(data["fp"], data["status"], data["id"])


@dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    """An Idempotency-Key to read and complete with a request's accept."""

    key: str
    fingerprint: str
    ttl_s: int


class IdempotencyKeys(StoreBase):
    """The accept script's Idempotency-Key arguments (of :class:`~service.core.store.Store`)."""

    def _idem_key(self, caller: str, key: str) -> str:
        return self.keys.idempotency(caller, hashlib.sha256(key.encode()).hexdigest())

    def claim_argv(self, caller: str, claim: IdempotencyClaim) -> tuple[str, str, int]:
        """The accept script's Idempotency-Key arguments: Redis key, fingerprint, ttl."""
        return self._idem_key(caller, claim.key), claim.fingerprint, claim.ttl_s


def fingerprint(payload: dict[str, Any], cipher: CredentialCipher | None = None) -> str:
    """A stable hash of a request body. Credential values are part of it, so with a cipher it
    is keyed (HMAC): a stored fingerprint cannot be brute-forced back to a weak secret. Without
    one, bodies carrying credentials are refused anyway."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    if cipher is not None:
        return cipher.mac(canonical)
    return hashlib.sha256(canonical).hexdigest()
