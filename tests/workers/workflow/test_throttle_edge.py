"""The adaptive rate at a known limit (Graph reports ``x-ms-throttle-limit-percentage``): sparse
429s at the edge hold only their own call, a burst holds every worker, and only a 429 for a call
sent from the plateau teaches the margin below the target."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from service.core.keys import Keys
from workers.workflow.throttle import AdaptiveRate, Slot, Throttle

ADAPTIVE = AdaptiveRate(start=10, slow_start_doubling_s=0.5, recover_s=3.0, beta=0.7)


def _adaptive(redis: Redis) -> Throttle:
    return Throttle(redis, "t", "tenant", adaptive=ADAPTIVE)


async def _state(redis: Redis) -> dict[str, float]:
    raw = await redis.hgetall(Keys("t").tenant_bucket("tenant"))
    return {k.decode(): float(v) for k, v in raw.items()}


async def _report(throttle: Throttle, usage: float | None, calls: int = 10) -> list[Slot]:
    """``calls`` slots, each answered at once with Graph's ``usage`` of the limit."""
    slots: list[Slot] = []
    while len(slots) < calls:
        slot = await throttle.acquire()
        await asyncio.sleep(slot.wait_s)
        if not slot.cooling:
            slots.append(slot)
            throttle.observe(usage)
    return slots


async def _held(redis: Redis) -> bool:
    """Whether every worker is held (the tenant cool-down is set)."""
    return int(await redis.pttl(Keys("t").cooldown("tenant"))) > 0


async def test_a_pair_of_429s_at_a_known_limit_holds_only_their_calls_a_third_holds_all(
    redis: Redis,
) -> None:
    t = _adaptive(redis)
    await _report(t, 0.9)  # Graph reports its usage: the limit is known
    burst = [await t.acquire() for _ in range(3)]  # three calls sent together, all throttled
    await t.throttled(1.0, burst[0])
    assert not await _held(redis)  # the edge: only that call waits
    await t.throttled(1.0, burst[1])
    assert not await _held(redis)  # a pair still is
    await t.throttled(1.0, burst[2])
    assert await _held(redis)  # a third: congestion, every worker waits Retry-After


async def test_without_usage_reports_every_429_holds_every_worker(redis: Redis) -> None:
    t = _adaptive(redis)
    await _report(t, None, calls=5)  # no x-ms-throttle-limit-percentage: 429s are the signal
    await t.throttled(1.0, await t.acquire())
    assert await _held(redis)


async def test_only_a_429_sent_from_the_plateau_teaches_a_margin(redis: Redis) -> None:
    t = _adaptive(redis)
    early = await t.acquire()  # the slow start: nothing known yet
    await asyncio.sleep(0.005)  # the plateau begins a server millisecond later at the earliest
    plateau: Slot | None = None
    for _ in range(20):  # Graph says 150% of its limit: the rate is held at the target share
        slots = await _report(t, 1.5, calls=10)
        if "tpl" in await _state(redis):
            plateau = slots[-1]
            break
    assert plateau is not None
    state = await _state(redis)
    assert early.ticket < state["tpl"] <= plateau.ticket
    await t.throttled(0.0, early)  # the slow start's overshoot: says nothing about the share
    assert "mg" not in await _state(redis)
    assert "tpl" not in await _state(redis)  # the cut leaves the plateau
    late: Slot | None = None
    for _ in range(20):
        slots = await _report(t, 1.5, calls=10)
        if "tpl" in await _state(redis):
            late = slots[-1]
            break
    assert late is not None
    await t.throttled(0.0, late)  # sent at the target share: that share is too close
    state = await _state(redis)
    # one step of margin_step calls/s, as a share of the limit estimate
    assert 0 < state["mg"] <= ADAPTIVE.margin_step / state["lim"] + 1e-9


async def _known_limit(redis: Redis, limit: float) -> None:
    """The tenant's state as after a while of Graph reporting a limit of ``limit`` calls/s: out
    of the slow start, the cubic well past its last event, the estimate fresh."""
    seconds, micros = await redis.time()
    now = int(seconds) * 1000 + int(micros) // 1000
    await redis.hset(
        Keys("t").tenant_bucket("tenant"),
        mapping={
            "cur": limit,
            "wmax": limit,
            "tev": now - 10_000,
            "k": 0,
            "ss": 0,
            "lim": limit,
            "lt": now,
            "ut": now,
        },
    )


async def test_the_plateau_keeps_a_few_calls_of_room_below_a_low_limit(redis: Redis) -> None:
    """Calls reach Graph a little early or late whatever the limit: at 20 calls/s the target
    share alone (0.95) left one call of room, and the edge's 429s recurred after a drop to it."""
    t = _adaptive(redis)
    await _known_limit(redis, 20)
    assert (await t.acquire()).rate == pytest.approx(20 - ADAPTIVE.headroom)
    await redis.flushdb()
    await _known_limit(redis, 200)
    assert (await t.acquire()).rate == pytest.approx(200 * ADAPTIVE.target_usage)
