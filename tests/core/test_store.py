"""The Redis store against a real Redis: atomic intake, dedupe, listing, credentials, keys."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from cryptography.fernet import Fernet
from redis.asyncio import Redis

from service.core.crypto import CredentialCipher
from service.core.errors import StoreUnavailable
from service.core.idempotency import fingerprint
from service.core.keys import Keys
from service.core.models import Record, State
from service.core.request import Credential
from service.core.store import Store
from tests.helpers.redis_server import free_port

SP = "6f1c3b9e-2a4d-4c8e-9b1f-0d2e3f4a5b6c"
QUEUE = "provisioner:queue"
K = Keys(QUEUE)


@pytest.fixture
async def store(redis: Redis) -> Store:
    cipher = CredentialCipher((Fernet.generate_key().decode(),))
    return Store(redis, queue_name=QUEUE, record_ttl_s=3600, cipher=cipher)


def rec(sp: str = SP, template: str | None = None, **kw: object) -> Record:
    return Record(
        id=uuid4().hex,
        service_principal_id=sp,
        template_id=template,
        requested_template_id=template,
        **kw,  # type: ignore[arg-type]
    )


async def test_accept_stores_and_enqueues_atomically(store: Store, redis: Redis) -> None:
    record, created = await store.accept(rec())
    assert created
    assert await store.get(record.id) == record
    assert await redis.exists(f"arq:job:{record.id}")
    assert await redis.zscore(QUEUE, record.id) is not None
    assert await store.get("missing") is None


async def test_in_flight_rule(store: Store) -> None:
    first, _ = await store.accept(rec(template="t"))
    dup, created = await store.accept(rec(template="t"))
    assert not created
    assert dup.id == first.id
    _, created = await store.accept(rec(template="other"))
    assert created
    _, created = await store.accept(rec())  # no template is its own slot
    assert created
    first.state = State.FAILED
    await store.save(first)
    fresh, created = await store.accept(rec(template="t"))
    assert created
    assert fresh.id != first.id


async def test_credentials_encrypted_and_deleted_when_terminal(store: Store, redis: Redis) -> None:
    creds = [Credential(key="SecretToken", value="plain-secret")]  # type: ignore[arg-type]
    record, _ = await store.accept(rec(), creds)
    raw = await redis.get(K.credentials(record.id))
    assert raw is not None
    assert b"plain-secret" not in raw
    got = await store.credentials(record.id)
    assert got is not None
    assert got[0].value.get_secret_value() == "plain-secret"
    record.state = State.SUCCEEDED
    await store.save(record)
    assert await store.credentials(record.id) is None


async def test_credentials_need_a_cipher(redis: Redis) -> None:
    plain = Store(redis, queue_name=QUEUE, record_ttl_s=3600)
    with pytest.raises(ValueError, match="encryption key"):
        await plain.accept(rec(), [Credential(key="SecretToken", value="v")])  # type: ignore[arg-type]


async def test_list_pages_with_tied_scores(store: Store) -> None:
    same = datetime(2030, 1, 1, tzinfo=UTC)
    ids = set()
    for i in range(23):
        record, _ = await store.accept(
            rec(sp=f"00000000-0000-4000-8000-{i:012d}", created_at=same, caller="a")
        )
        ids.add(record.id)
    await store.accept(rec(sp="00000000-0000-4000-8000-999999999999", caller="b"))
    seen: list[str] = []
    cursor = None
    while True:
        page, cursor = await store.list(caller="a", cursor=cursor, limit=5)
        seen += [r.id for r in page]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 23
    assert set(seen) == ids


async def test_list_filters(store: Store) -> None:
    a, _ = await store.accept(rec(sp="00000000-0000-4000-8000-000000000001"))
    b, _ = await store.accept(rec(sp="00000000-0000-4000-8000-000000000002"))
    b.state = State.FAILED
    await store.save(b)
    assert [r.id for r in (await store.list(state=State.FAILED))[0]] == [b.id]
    assert [r.id for r in (await store.list(state=State.QUEUED))[0]] == [a.id]
    page, _ = await store.list(service_principal_id=a.service_principal_id)
    assert [r.id for r in page] == [a.id]
    with pytest.raises(ValueError, match="cursor"):
        await store.list(cursor="%%%")


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


async def test_cancel_flag_and_enqueue(store: Store, redis: Redis) -> None:
    record, _ = await store.accept(rec())
    assert not await store.cancel_requested(record.id)
    running = await store.get(record.id)
    assert running is not None
    running.state = State.RUNNING
    await store.save(running)
    current, outcome = await store.cancel(record.id, lambda queued: None)
    assert outcome == "accepted"
    assert current is not None
    assert current.state is State.RUNNING  # the worker ends it cancelled at its next boundary
    assert await store.cancel_requested(record.id)
    assert await store.enqueue(record.id) is False  # arq already holds the job
    await redis.delete(f"arq:job:{record.id}")
    assert await store.enqueue(record.id) is True


def test_fingerprint_is_canonical() -> None:
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})


async def test_unreachable_redis_raises_store_unavailable_fast() -> None:
    timeout_s = 2
    client = Redis.from_url(
        f"redis://127.0.0.1:{free_port()}/0",
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
    )
    store = Store(client, queue_name=QUEUE, record_ttl_s=3600)
    started = time.monotonic()
    try:
        with pytest.raises(StoreUnavailable):
            await store.ping()
        with pytest.raises(StoreUnavailable):
            await store.accept(rec())
        with pytest.raises(StoreUnavailable):
            await store.list()
    finally:
        await client.aclose()
    # Refused connections fail at once: three calls well within two socket timeouts (the
    # bound leaves a loaded machine its slack and still catches a retry or a hang).
    assert time.monotonic() - started < 2 * timeout_s


async def test_another_callers_request_waits_behind_the_in_flight_one(
    store: Store, redis: Redis
) -> None:
    first, created = await store.accept(rec(template="t", caller="a"))
    assert created
    second, created = await store.accept(rec(template="t", caller="b"))
    assert created
    assert second.queued_behind == first.id
    assert not await redis.exists(f"arq:job:{second.id}")
    again, created = await store.accept(rec(template="t", caller="b"))
    assert (again.id, created) == (second.id, False)
    third, _ = await store.accept(rec(template="t", caller="c"))
    first.state = State.SUCCEEDED
    await store.save(first)  # hands the slot to the oldest waiter
    assert await redis.exists(f"arq:job:{second.id}")
    assert not await redis.exists(f"arq:job:{third.id}")
    got = await store.get(second.id)
    assert got is not None
    assert got.queued_behind is None
    assert await redis.get(K.inflight(SP, "t")) == second.id.encode()


async def test_cancelled_waiter_is_skipped_and_a_lost_holder_is_repaired(
    store: Store, redis: Redis
) -> None:
    from service.core.settings import load_settings
    from workers.reconcile import reconcile_once

    first, _ = await store.accept(rec(template="t", caller="a"))
    waiter, _ = await store.accept(rec(template="t", caller="b"))
    last, _ = await store.accept(rec(template="t", caller="c"))
    waiter.state = State.CANCELLED
    await store.save(waiter)
    assert await redis.lrange(K.waiting(SP, "t"), 0, -1) == [last.id.encode()]
    # The holder's record vanishes without a terminal save (expired, deleted by hand):
    await redis.delete(K.record(first.id))
    settings = load_settings(redis_url="redis://unused")
    result = await reconcile_once(store, settings)
    assert result.requeued == 1
    assert await redis.exists(f"arq:job:{last.id}")
    assert not await redis.exists(f"arq:job:{waiter.id}")


async def test_retry_behind_another_callers_request_waits(store: Store, redis: Redis) -> None:
    mine, _ = await store.accept(rec(template="t", caller="a"))
    mine.state = State.FAILED
    await store.save(mine)
    other, _ = await store.accept(rec(template="t", caller="b"))
    await redis.delete(f"arq:job:{mine.id}")
    mine.state = State.QUEUED
    again, requeued = await store.redrive(mine)
    assert requeued
    assert again.queued_behind == other.id
    assert not await redis.exists(f"arq:job:{mine.id}")
    older = rec(template="t", caller="b", state=State.FAILED)
    await store.save(older)
    holder, requeued = await store.redrive(older)  # the same caller's request holds it
    assert (holder.id, requeued) == (other.id, False)


async def test_concurrent_accepts_of_one_app_make_one_request(store: Store, redis: Redis) -> None:
    import asyncio

    accepts = (store.accept(rec(template="c", caller="a")) for _ in range(20))
    results = await asyncio.gather(*accepts)
    created = [r for r, new in results if new]
    assert len(created) == 1
    assert {r.id for r, _ in results} == {created[0].id}
    assert await redis.zcard(QUEUE) == 1
    stored = await store.get(created[0].id)
    assert stored == created[0]
    assert stored is not None
    assert stored.queued_behind is None
    assert [r.id for r in (await store.list(caller="a"))[0]] == [created[0].id]


async def test_save_reads_the_cancel_flag_in_the_same_transaction(store: Store) -> None:
    record, _ = await store.accept(rec())
    record.state = State.RUNNING
    assert await store.save(record) is False
    _, outcome = await store.cancel(record.id, lambda queued: None)
    assert outcome == "accepted"
    assert await store.save(record) is True
    record.state = State.CANCELLED
    assert await store.save(record) is False  # a terminal save clears the flag
    assert not await store.cancel_requested(record.id)
