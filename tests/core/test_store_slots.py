"""The in-flight slot's transactions against a real Redis: cancel, waiters promoted, redrive."""

from __future__ import annotations

from redis.asyncio import Redis

from service.core.models import State
from service.core.store import Store
from tests.helpers.records import SP, K, rec


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
