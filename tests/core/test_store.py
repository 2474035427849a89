"""The Redis store against a real Redis: atomic intake, dedupe, listing, credentials, keys."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from service.core.models import State
from service.core.request import Credential
from service.core.store import Store
from tests.helpers.records import QUEUE, K, rec


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
