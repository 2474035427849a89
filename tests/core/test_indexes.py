"""Listing indexes against a real Redis: per caller, bounded, trimmed after retention."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from uuid import uuid4

from redis.asyncio import Redis

from service.core.keys import Keys
from service.core.models import Record, State
from service.core.settings import load_settings
from service.core.store import Store
from workers.reconcile import reconcile_once

QUEUE = "provisioner:queue"
K = Keys(QUEUE)


def rec(caller: str, n: int = 0, **kw: object) -> Record:
    return Record(
        id=uuid4().hex,
        service_principal_id=f"00000000-0000-4000-8000-{n:012d}",
        caller=caller,
        **kw,  # type: ignore[arg-type]
    )


async def commands_run(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    skip = ("cmdstat_info", "cmdstat_config")
    return sum(int(v["calls"]) for k, v in stats.items() if not k.startswith(skip))


async def test_a_callers_list_never_reads_other_callers_records(redis: Redis) -> None:
    store = Store(redis, queue_name=QUEUE, record_ttl_s=3600)
    async with redis.pipeline(transaction=False) as pipe:
        for i in range(3000):
            store._write(pipe, rec("big", i))
        await pipe.execute()
    mine = rec("small", 1)
    await store.accept(mine)
    await redis.config_resetstat()
    page, cursor = await store.list(caller="nobody", limit=1)
    assert (page, cursor) == ([], None)
    assert await commands_run(redis) == 1  # one ZREVRANGEBYSCORE on an empty key
    await redis.config_resetstat()
    page, _ = await store.list(caller="small", limit=50)
    assert [r.id for r in page] == [mine.id]
    assert await commands_run(redis) == 2  # the range and one MGET
    # By state and by principal: the caller's own sets too.
    page, _ = await store.list(caller="small", state=State.QUEUED)
    assert [r.id for r in page] == [mine.id]
    page, _ = await store.list(caller="big", service_principal_id=mine.service_principal_id)
    assert [r.caller for r in page] == ["big"]
    # Operators (caller=None) read the all-callers index.
    page, _ = await store.list(caller=None, limit=200)
    assert len(page) == 200


async def test_states_move_between_sets_and_only_in_flight_sets_are_global(
    redis: Redis,
) -> None:
    store = Store(redis, queue_name=QUEUE, record_ttl_s=3600)
    record, _ = await store.accept(rec("a"))
    assert await redis.zscore(K.by_state("queued"), record.id) is not None
    record.state = State.FAILED
    await store.save(record)
    assert await redis.zscore(K.by_state("queued"), record.id) is None
    assert not await redis.exists(K.by_state("failed"))  # no unbounded global set
    for scope in ("a", None):
        assert await redis.zscore(K.caller_state(scope, "failed"), record.id) is not None
        assert await redis.zscore(K.caller_state(scope, "queued"), record.id) is None
    # The old global listing indexes are neither written nor read.
    assert not await redis.exists(f"{QUEUE}:index", f"{QUEUE}:sp:{record.service_principal_id}")


async def test_finished_records_expire_after_retention_and_leave_the_indexes(
    redis: Redis,
) -> None:
    store = Store(redis, queue_name=QUEUE, record_ttl_s=3600, retention_s=1)
    done, _ = await store.accept(rec("a", 1))
    live, _ = await store.accept(rec("a", 2))
    assert await redis.ttl(K.record(live.id)) > 3000
    done.state = State.SUCCEEDED
    await store.save(done)
    assert 0 < await redis.pttl(K.record(done.id)) <= 1000
    deadline = time.monotonic() + 10
    while await redis.exists(K.record(done.id)):  # Redis expires it (the event we wait for)
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    settings = load_settings(redis_url="redis://unused", stuck_grace_s=900)
    result = await reconcile_once(store, settings)
    assert result.trimmed == 1
    for scope in ("a", None):
        assert await redis.zscore(K.caller_index(scope), done.id) is None
        assert await redis.zscore(K.caller_state(scope, "succeeded"), done.id) is None
        assert (
            await redis.zscore(K.caller_principal(scope, done.service_principal_id), done.id)
            is None
        )
        assert await redis.zscore(K.caller_index(scope), live.id) is not None
    assert await redis.zcard(K.expiring) == 0
    assert (await reconcile_once(store, settings)).trimmed == 0


async def test_a_finished_record_written_again_is_not_trimmed(redis: Redis) -> None:
    store = Store(redis, queue_name=QUEUE, record_ttl_s=3600, retention_s=60)
    done, _ = await store.accept(rec("a"))
    done.state = State.FAILED
    await store.save(done)
    member = (await redis.zrange(K.expiring, 0, 0))[0]
    await redis.zadd(K.expiring, {member: 0})  # as if its first expiry had passed
    assert await store.trim_expired() == 0
    assert await redis.zscore(K.caller_index("a"), done.id) is not None
    assert (await redis.zscore(K.expiring, member) or 0) > time.time() * 1000


async def test_each_write_drops_entries_older_than_any_record_can_live(redis: Redis) -> None:
    store = Store(redis, queue_name=QUEUE, record_ttl_s=3600, retention_s=3600)
    ancient = datetime.now(UTC) - timedelta(hours=3)
    orphan = rec("a", created_at=ancient)
    await redis.zadd(K.caller_index("a"), {orphan.id: ancient.timestamp() * 1000})
    await redis.zadd(K.caller_index(None), {orphan.id: ancient.timestamp() * 1000})
    fresh, _ = await store.accept(rec("a"))
    assert await redis.zrange(K.caller_index("a"), 0, -1) == [fresh.id.encode()]
    assert await redis.zrange(K.caller_index(None), 0, -1) == [fresh.id.encode()]
