"""Cancel against the final save, on a real Redis: whichever commits first wins, atomically.

A cancel accepted (202) before the worker's final save turns that save into ``cancelled``; a
final save committed first makes the cancel too late (409). The two race for real: many
concurrent pairs, each must end consistent with the answer the cancel got.
"""

from __future__ import annotations

import asyncio
import uuid

from redis.asyncio import Redis

from service.core.fields import utcnow
from service.core.models import HistoryEntry, Outcome, Record, State, Step
from service.core.store import Store
from workers.workflow.failures import cancel_message


def _store(redis: Redis) -> Store:
    return Store(redis, queue_name=f"test-cancel:{uuid.uuid4().hex[:6]}", record_ttl_s=600)


def _started(store: Store) -> Record:
    record = Record(
        id=uuid.uuid4().hex, service_principal_id=str(uuid.uuid4()), state=State.RUNNING
    )
    record.job_id = "scim.job"
    record.add(HistoryEntry(step=Step.START_JOB, outcome=Outcome.SUCCEEDED, at=utcnow()))
    return record


def _cancel_queued(record: Record) -> None:
    record.state = State.CANCELLED


def _mark(record: Record) -> None:
    record.state = State.CANCELLED
    record.add(
        HistoryEntry(
            step=Step.VERIFY, outcome=Outcome.CANCELLED, at=utcnow(), message=cancel_message(record)
        )
    )


async def test_an_accepted_cancel_wins_over_the_final_save(redis: Redis) -> None:
    store = _store(redis)
    record = _started(store)
    await store.save(record)
    current, outcome = await store.cancel(record.id, _cancel_queued)
    assert outcome == "accepted"
    assert current is not None
    assert current.state is State.RUNNING
    record.state = State.SUCCEEDED
    assert await store.save_final(record, _mark) is True
    stored = await store.get(record.id)
    assert stored is not None
    assert stored.state is State.CANCELLED
    assert "stays started in the tenant" in (stored.history[-1].message or "")
    assert not await store.cancel_requested(record.id)  # the flag went with the final save


async def test_a_cancel_after_the_final_save_is_too_late(redis: Redis) -> None:
    store = _store(redis)
    record = _started(store)
    await store.save(record)
    record.state = State.SUCCEEDED
    assert await store.save_final(record, _mark) is False
    current, outcome = await store.cancel(record.id, _cancel_queued)
    assert outcome == "too_late"
    assert current is not None
    assert current.state is State.SUCCEEDED


async def test_a_queued_request_is_cancelled_at_once_and_the_flag_stays(redis: Redis) -> None:
    store = _store(redis)
    record = Record(id=uuid.uuid4().hex, service_principal_id=str(uuid.uuid4()))
    await store.save(record)
    current, outcome = await store.cancel(record.id, _cancel_queued)
    assert (outcome, current.state if current else None) == ("accepted", State.CANCELLED)
    assert await store.cancel_requested(record.id)  # a worker that picked it up stops too
    assert (await store.cancel(record.id, _cancel_queued))[1] == "already"


async def test_racing_pairs_always_agree_with_the_answer(redis: Redis) -> None:
    store = _store(redis)

    async def late_cancel(request_id: str, delay_s: float) -> tuple[Record | None, str]:
        await asyncio.sleep(delay_s)
        return await store.cancel(request_id, _cancel_queued)

    async def late_final(record: Record, delay_s: float) -> bool:
        await asyncio.sleep(delay_s)
        return await store.save_final(record, _mark)

    async def pair(i: int) -> tuple[str, State]:
        record = _started(store)
        await store.save(record)
        final = record.model_copy(deep=True)
        final.state = State.SUCCEEDED
        (_, outcome), _ = await asyncio.gather(
            late_cancel(record.id, 0 if i % 2 else 0.002),
            late_final(final, 0.002 if i % 2 else 0),
        )
        stored = await store.get(record.id)
        assert stored is not None
        return outcome, stored.state

    results = await asyncio.gather(*(pair(i) for i in range(40)))
    for outcome, state in results:
        assert outcome in {"accepted", "too_late"}
        assert state is (State.CANCELLED if outcome == "accepted" else State.SUCCEEDED)
    won = sum(o == "accepted" for o, _ in results)
    print(f"\n40 races: {won} cancels won, {40 - won} too late")
