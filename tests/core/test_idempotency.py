"""Idempotency-Key claims and body fingerprints against a real Redis."""

from __future__ import annotations

from service.core.idempotency import fingerprint
from service.core.store import Store


async def test_idempotency_keys(store: Store) -> None:
    assert await store.claim_idempotency_key("a", "k", "fp1", 60) is None
    pending = await store.claim_idempotency_key("a", "k", "fp1", 60)
    assert pending is not None
    assert pending.status is None
    assert await store.claim_idempotency_key("b", "k", "fp1", 60) is None  # per caller
    await store.complete_idempotency_key("a", "k", "fp1", 202, "rid", 60)
    done = await store.claim_idempotency_key("a", "k", "fp2", 60)
    assert done is not None
    assert (done.fingerprint, done.status, done.request_id) == (
        "fp1",
        202,
        "rid",
    )
    await store.release_idempotency_key("a", "k")
    assert await store.claim_idempotency_key("a", "k", "fp2", 60) is None


def test_fingerprint_is_canonical() -> None:
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
