"""The worker's saves against a real Redis: one script each, indexes rewritten only on a change,
the final save against a cancel, a save under a lease."""

from __future__ import annotations

from redis.asyncio import Redis

from service.core.models import State
from service.core.store import Store
from service.core.store_save import Guarded, Release, Then, Writes
from tests.helpers.records import SP, K, new_store, rec


async def calls(redis: Redis, command: str) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def index_ids(redis: Redis, state: State) -> set[str]:
    return {m.decode() for m in await redis.zrange(K.caller_state(None, state.value), 0, -1)}


async def test_a_save_that_changes_no_state_rewrites_no_index(store: Store, redis: Redis) -> None:
    record, _ = await store.accept(rec())
    record.state = State.RUNNING
    await store.save(record)
    assert record.id in await index_ids(redis, State.RUNNING)
    assert record.id not in await index_ids(redis, State.QUEUED)
    before = await calls(redis, "zadd")
    record.step = None
    record.attempts += 1
    assert await store.save(record) is False
    assert await calls(redis, "zadd") == before  # state and principal as stored: no index write
    stored = await store.get(record.id)
    assert stored is not None
    assert stored.attempts == record.attempts


async def test_a_record_changed_by_another_process_gets_its_indexes(
    store: Store, redis: Redis
) -> None:
    """The store's memory of what it wrote is only a hint: the script compares with Redis."""
    record, _ = await store.accept(rec())
    record.state = State.RUNNING
    await store.save(record)
    other = new_store(redis)  # e.g. the reconciler in another worker fails it
    failed = await other.get(record.id)
    assert failed is not None
    failed.state = State.FAILED
    await other.save(failed)
    assert record.id in await index_ids(redis, State.FAILED)
    await store.save(record)  # this store last wrote "running": it sent no indexes, at first
    assert record.id in await index_ids(redis, State.RUNNING)
    assert record.id not in await index_ids(redis, State.FAILED)


async def test_the_final_save_loses_to_a_cancel_and_frees_the_slot(
    store: Store, redis: Redis
) -> None:
    record, _ = await store.accept(rec(template="t", caller="a"))
    waiter, _ = await store.accept(rec(template="t", caller="b"))
    record.state = State.RUNNING
    await store.save(record)
    await store.cancel(record.id, lambda queued: None)
    record.state = State.SUCCEEDED
    seen: list[str] = []

    def cancelled(r: object) -> None:
        seen.append(record.state.value)
        record.state = State.CANCELLED

    assert await store.save_final(record, cancelled) is True
    assert seen == ["succeeded"]  # nothing was written before the record became cancelled
    stored = await store.get(record.id)
    assert stored is not None
    assert stored.state is State.CANCELLED
    assert not await store.cancel_requested(record.id)
    assert record.id in await index_ids(redis, State.CANCELLED)
    # the slot went to the request waiting behind it
    assert await redis.get(K.inflight(SP, "t")) == waiter.id.encode()
    assert await redis.exists(f"arq:job:{waiter.id}")


async def test_a_final_save_without_a_cancel_or_a_waiter(store: Store, redis: Redis) -> None:
    record, _ = await store.accept(rec(template="t"))
    record.state = State.SUCCEEDED
    assert await store.save_final(record, lambda r: None) is False
    assert not await redis.exists(K.inflight(SP, "t"))
    assert record.id in await index_ids(redis, State.SUCCEEDED)
    assert record.id not in await index_ids(redis, State.QUEUED)


async def test_a_leased_save_writes_nothing_once_the_lease_is_gone(
    store: Store, redis: Redis
) -> None:
    record, _ = await store.accept(rec())
    record.state = State.RUNNING
    record.step = None
    await store.save(record)
    await redis.set("lease", "mine", px=10_000)
    note = Writes()
    note.set("note", "sent", px=60_000)
    record.attempts = 7
    assert await store.save_leased(record, ("lease", "mine", 30_000), note) is False
    assert await redis.get("note") == b"sent"
    assert int(await redis.pttl("lease")) > 10_000  # renewed by the same script
    stored = await store.get(record.id)
    assert stored is not None
    assert stored.attempts == 7
    await redis.set("lease", "theirs")
    await redis.delete("note")
    record.attempts = 8
    assert await store.save_leased(record, ("lease", "mine", 30_000), note) is None
    assert not await redis.exists("note")
    stored = await store.get(record.id)
    assert stored is not None
    assert stored.attempts == 7


async def test_a_save_with_a_release_writes_and_frees_only_its_own_lease(
    store: Store, redis: Redis
) -> None:
    """The create claim's end rides on the step's save: the note is written and the lease
    deleted in the same script, a lease another run holds now is left alone."""
    record, _ = await store.accept(rec())
    record.state = State.RUNNING
    await store.save(record)
    await redis.set("lease", "mine", px=10_000)
    release = Release(("lease", "mine"))
    release.writes.set("note", "job-1", px=60_000)
    record.attempts = 3
    assert await store.save(record, release=release) is False
    assert await redis.get("note") == b"job-1"
    assert not await redis.exists("lease")
    await redis.set("lease", "theirs", px=10_000)
    release = Release(("lease", "mine"))
    release.writes.set("note", "job-2", px=60_000)
    record.attempts = 4
    await store.save(record, release=release)
    assert await redis.get("note") == b"job-2"  # written: the job exists whoever holds it
    assert await redis.get("lease") == b"theirs"
    stored = await store.get(record.id)
    assert stored is not None
    assert stored.attempts == 4


async def test_the_final_save_runs_guarded_writes_only_over_what_was_read(
    store: Store, redis: Redis
) -> None:
    """The health watch's application is written with the request's end, without a WATCH:
    when it changed after it was read, the change is prepared again from the new value, which
    the script hands back (no second read)."""
    record, _ = await store.accept(rec(template="t"))
    record.state = State.SUCCEEDED
    await redis.set("app", "v1")
    prepared: list[bytes] = []

    async def writes(*found: bytes | None) -> Guarded:
        raw = found[0] if found else await redis.get("app")
        assert raw is not None
        prepared.append(raw)
        if len(prepared) == 1:
            await redis.set("app", "v2")  # another writer, between the read and the save
        guard = Guarded("app", raw)
        guard.writes.set("app", raw + b"+watched")
        return guard

    assert await store.save_final(record, lambda r: None, writes) is False
    assert prepared == [b"v1", b"v2"]
    assert await redis.get("app") == b"v2+watched"
    stored = await store.get(record.id)
    assert stored is not None
    assert stored.state is State.SUCCEEDED


#: A stand-in for another part's script (the throttle's take): it sees its own KEYS and ARGV.
_COUNT = "redis.call('INCRBY', KEYS[1], ARGV[1]) return {ARGV[2], #ARGV}"


async def test_a_step_save_runs_its_then_script_in_the_same_round_trip(
    store: Store, redis: Redis
) -> None:
    record, _ = await store.accept(rec())
    record.state = State.RUNNING
    await store.save(record, then=Then(_COUNT, ("counted",), ("1", "x")))  # script loaded
    scripts = await calls(redis, "evalsha")
    then = Then(_COUNT, ("counted",), ("5", "seen"))
    assert await store.save(record, then=then) is False
    assert then.reply == [b"seen", 2]
    assert await redis.get("counted") == b"6"
    assert await calls(redis, "evalsha") == scripts + 1  # one round trip for both
    stored = await store.get(record.id)
    assert stored is not None
    assert stored.state is State.RUNNING
    assert record.id in await index_ids(redis, State.RUNNING)


async def test_the_then_script_runs_once_when_the_save_resends_its_indexes(
    store: Store, redis: Redis
) -> None:
    record, _ = await store.accept(rec())
    record.state = State.RUNNING
    await store.save(record)
    other = new_store(redis)  # another process changed the state: the first try writes nothing
    failed = await other.get(record.id)
    assert failed is not None
    failed.state = State.FAILED
    await other.save(failed)
    then = Then(_COUNT, ("counted",), ("1", "x"))
    await store.save(record, then=then)
    assert await redis.get("counted") == b"1"
    assert then.reply == [b"x", 2]
    assert record.id in await index_ids(redis, State.RUNNING)


async def test_no_then_script_after_a_cancel_or_with_the_final_save(
    store: Store, redis: Redis
) -> None:
    record, _ = await store.accept(rec(template="t"))
    record.state = State.RUNNING
    await redis.set(K.cancel(record.id), "1")
    then = Then(_COUNT, ("counted",), ("1", "x"))
    assert await store.save(record, then=then) is True  # saved, and the cancel flag read
    assert then.reply is None
    assert not await redis.exists("counted")
    record.state = State.SUCCEEDED
    last = Then(_COUNT, ("counted",), ("1", "x"))
    await store.save(record, then=last)
    assert last.reply is None
    assert not await redis.exists("counted")
