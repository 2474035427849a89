"""The tenant throttle against real Redis: cool-down, shared token bucket, no wasted slots."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from workers.workflow.throttle import Throttle


def _pair(redis: Redis, **kw: float) -> tuple[Throttle, Throttle]:
    """Two workers' throttles for one tenant."""
    rate, burst = kw.get("rate", 10.0), int(kw.get("burst", 2))
    return (
        Throttle(redis, "t", "tenant", rate_per_s=rate, burst=burst),
        Throttle(redis, "t", "tenant", rate_per_s=rate, burst=burst),
    )


async def test_one_workers_429_holds_every_worker(redis: Redis) -> None:
    a, b = _pair(redis, rate=0)
    await a.hold(2.0)
    seconds, cooling = await b.pace()
    assert cooling
    assert 1.5 < seconds <= 2.0
    await a.hold(0.5)  # a shorter hold never shortens the running cool-down
    assert (await b.pace())[0] > 1.5


async def test_the_bucket_is_shared_between_workers(redis: Redis) -> None:
    a, b = _pair(redis, rate=10, burst=2)
    waits = [(await (a if i % 2 else b).pace())[0] for i in range(6)]
    assert waits[:2] == [0.0, 0.0]  # the burst
    # then one slot every 0.1 s, handed out in order across both workers
    assert [round(w, 1) for w in waits[2:]] == [0.1, 0.2, 0.3, 0.4]


async def test_a_slot_too_far_away_is_not_reserved(redis: Redis) -> None:
    a, b = _pair(redis, rate=10, burst=1)
    assert (await a.pace())[0] == 0.0
    for _ in range(5):
        seconds, _ = await b.pace(max_wait_s=0.01)  # will defer instead of waiting
        assert seconds > 0.01
    # none of those refusals pushed the next caller back
    seconds, _ = await a.pace()
    assert seconds <= 0.1


async def test_released_from_a_cool_down_callers_still_take_slots(redis: Redis) -> None:
    a, b = _pair(redis, rate=10, burst=1)
    await a.hold(0.2)
    await asyncio.sleep(0.25)
    waits = sorted([(await a.pace())[0], (await b.pace())[0], (await a.pace())[0]])
    assert waits[0] == 0.0
    assert waits[1] > 0.05  # not all at once after the cool-down
    assert waits[2] > waits[1]


async def test_coordination_off_never_waits(redis: Redis) -> None:
    off = Throttle(redis, "t", "tenant", rate_per_s=1, burst=1, coordinate=False)
    await off.hold(5)
    assert [await off.delay_s() for _ in range(3)] == [0.0, 0.0, 0.0]
