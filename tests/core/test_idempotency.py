"""Idempotency-Keys read and completed by the accept script, and body fingerprints, against a
real Redis."""

from __future__ import annotations

import hashlib

from redis.asyncio import Redis

from service.core.idempotency import IdempotencyClaim, fingerprint
from service.core.store import Store
from tests.helpers.records import K, rec

SP2 = "7f1c3b9e-2a4d-4c8e-9b1f-0d2e3f4a5b6c"


async def test_a_key_is_completed_with_the_accept_and_replayed(store: Store) -> None:
    first = await store.accept_keyed(
        rec(caller="a", request_fingerprint="fp1"), None, IdempotencyClaim("k", "fp1", 60)
    )
    assert first.created
    assert first.replay is None
    # The same key again: nothing written, the first answer (whatever the body, which the
    # intake compares: another fingerprint is a 422 there).
    for fp in ("fp1", "fp2"):
        again = await store.accept_keyed(
            rec(SP2, caller="a", request_fingerprint=fp), None, IdempotencyClaim("k", fp, 60)
        )
        assert not again.created
        assert again.replay is not None
        assert (again.replay.fingerprint, again.replay.status, again.replay.request_id) == (
            "fp1",
            202,
            first.record.id,
        )
    # Keys are per caller.
    other = await store.accept_keyed(
        rec(SP2, caller="b", request_fingerprint="fp1"), None, IdempotencyClaim("k", "fp1", 60)
    )
    assert other.created
    assert other.replay is None


async def test_the_callers_own_in_flight_request_completes_the_key_as_a_200(
    store: Store, redis: Redis
) -> None:
    held, _ = await store.accept(rec(caller="a", request_fingerprint="fp1"))
    same = await store.accept_keyed(
        rec(caller="a", request_fingerprint="fp1"), None, IdempotencyClaim("k1", "fp1", 60)
    )
    assert (same.created, same.record.id, same.replay) == (False, held.id, None)
    replay = await store.accept_keyed(
        rec(caller="a", request_fingerprint="fp1"), None, IdempotencyClaim("k1", "fp1", 60)
    )
    assert replay.replay is not None
    assert (replay.replay.status, replay.replay.request_id) == (200, held.id)
    # Another body for the held app: the key stays free (the intake answers 409), so the
    # caller may use it again once the app is free.
    other = await store.accept_keyed(
        rec(caller="a", request_fingerprint="fp2"), None, IdempotencyClaim("k2", "fp2", 60)
    )
    assert (other.created, other.record.id, other.replay) == (False, held.id, None)
    assert not await redis.exists(K.idempotency("a", hashlib.sha256(b"k2").hexdigest()))
    assert await redis.exists(K.idempotency("a", hashlib.sha256(b"k1").hexdigest()))


async def test_a_replay_writes_nothing(store: Store, redis: Redis) -> None:
    await store.accept_keyed(rec(caller="a"), None, IdempotencyClaim("k", "fp", 60))
    before = sorted(await redis.keys("*"))
    await store.accept_keyed(rec(SP2, caller="a"), None, IdempotencyClaim("k", "fp", 60))
    assert sorted(await redis.keys("*")) == before
    ttl = await redis.ttl(K.idempotency("a", hashlib.sha256(b"k").hexdigest()))
    assert 0 < ttl <= 60


def test_fingerprint_is_canonical() -> None:
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
