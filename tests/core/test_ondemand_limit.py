"""The shared provisionOnDemand window on a real Redis: 5 slots, then a wait that ends when the
oldest call leaves the window; limiters of two "workers" share it."""

from __future__ import annotations

import asyncio
import uuid

from redis.asyncio import Redis

from service.core.keys import Keys
from service.core.ondemand_limit import OnDemandLimiter


async def test_five_slots_then_a_wait_shared_by_every_limiter(redis: Redis) -> None:
    keys = Keys(f"odl-{uuid.uuid4().hex[:8]}")
    # A window the six takes fit in on a loaded machine too.
    one = OnDemandLimiter(redis, keys, "tenant-a", limit=5, window_s=3)
    two = OnDemandLimiter(redis, keys, "tenant-a", limit=5, window_s=3)
    granted = [await (one if i % 2 else two).acquire() for i in range(5)]
    assert granted == [0.0] * 5
    wait = await two.acquire()
    assert 0 < wait <= 3
    assert await OnDemandLimiter(redis, keys, "tenant-b", window_s=3).acquire() == 0.0
    await asyncio.sleep(wait)
    assert await one.acquire() == 0.0
    assert await redis.pttl(keys.on_demand_window("tenant-a")) > 0  # the key expires


async def test_concurrent_takers_never_exceed_the_limit(redis: Redis) -> None:
    keys = Keys(f"odl-{uuid.uuid4().hex[:8]}")
    limiters = [OnDemandLimiter(redis, keys, "t", limit=5, window_s=30) for _ in range(4)]
    results = await asyncio.gather(*(limiters[i % 4].acquire() for i in range(40)))
    assert sum(1 for r in results if r == 0.0) == 5
