"""Idempotency-Key claims and the request fingerprints they compare.

A key is claimed pending (briefly) before the request is accepted and completed with the first
response's status and request id, so a replay gets the same answer and a different body under
the same key is told apart.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from service.core.crypto import CredentialCipher
from service.core.redis import guarded
from service.core.store_base import StoreBase


@dataclass(frozen=True, slots=True)
class IdempotencyEntry:
    """What an Idempotency-Key already stands for."""

    fingerprint: str
    status: int | None  # None while the first request is still being accepted
    request_id: str | None


class IdempotencyKeys(StoreBase):
    """Idempotency-Key claims, a part of :class:`~service.core.store.Store`."""

    def _idem_key(self, caller: str, key: str) -> str:
        return self.keys.idempotency(caller, hashlib.sha256(key.encode()).hexdigest())

    async def claim_idempotency_key(
        self, caller: str, key: str, fingerprint: str, ttl_s: int
    ) -> IdempotencyEntry | None:
        """Claim an Idempotency-Key for a body; None when claimed now, else what it holds."""
        redis_key = self._idem_key(caller, key)
        pending = json.dumps({"fp": fingerprint, "status": None, "id": None})
        # The pending claim is short-lived: a crashed API must not block the key for a day.
        if await guarded(lambda: self.redis.set(redis_key, pending, nx=True, ex=30)):
            return None
        raw = await guarded(lambda: self.redis.get(redis_key))
        if raw is None:
            return await self.claim_idempotency_key(caller, key, fingerprint, ttl_s)
        data = json.loads(raw)
        return IdempotencyEntry(data["fp"], data["status"], data["id"])

    async def complete_idempotency_key(
        self, caller: str, key: str, fingerprint: str, status: int, request_id: str, ttl_s: int
    ) -> None:
        """Record the first response's status and request id for replays."""
        value = json.dumps({"fp": fingerprint, "status": status, "id": request_id})
        await guarded(lambda: self.redis.set(self._idem_key(caller, key), value, ex=ttl_s))

    async def release_idempotency_key(self, caller: str, key: str) -> None:
        """Drop a pending claim whose request was rejected, so the caller may try again."""
        await guarded(lambda: self.redis.delete(self._idem_key(caller, key)))


def fingerprint(payload: dict[str, Any], cipher: CredentialCipher | None = None) -> str:
    """A stable hash of a request body. Credential values are part of it, so with a cipher it
    is keyed (HMAC): a stored fingerprint cannot be brute-forced back to a weak secret. Without
    one, bodies carrying credentials are refused anyway."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    if cipher is not None:
        return cipher.mac(canonical)
    return hashlib.sha256(canonical).hexdigest()
