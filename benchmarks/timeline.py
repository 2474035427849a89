"""Sampling a run over time: the tenant's adaptive rate (from Redis) and the calls the sandbox
admitted and answered 429, a few times a second, for the rate-vs-time plots and the
"429s stop within / rate recovers within" figures of benchmarks/throttle.py."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import redis as redis_sync

from benchmarks.stack import Stack
from service.core.keys import Keys


@dataclass
class Sample:
    t: float  # seconds since the run began
    rate: float  # the tenant's shared rate (calls/s; 0 before the first call)
    calls: int  # Graph calls answered so far (token endpoint excluded)
    throttled: int  # of which 429
    limit: int  # the sandbox's R at that moment


@dataclass
class Timeline:
    samples: list[Sample] = field(default_factory=list)

    def admitted_rate(self, i: int, span_s: float = 2.0) -> float:
        """Calls/s admitted (not 429) over the ``span_s`` before sample ``i``."""
        s = self.samples[i]
        j = i
        while j > 0 and s.t - self.samples[j].t < span_s:
            j -= 1
        a = self.samples[j]
        dt = s.t - a.t
        return ((s.calls - s.throttled) - (a.calls - a.throttled)) / dt if dt > 0 else 0.0

    def last_429_after(self, start: float, end: float) -> float | None:
        """Seconds after ``start`` of the last sample in [start, end) that saw a new 429."""
        last = None
        for prev, s in zip(self.samples, self.samples[1:], strict=False):
            if start <= s.t < end and s.throttled > prev.throttled:
                last = s.t - start
        return last

    def bursts(
        self, start: float, end: float, gap_s: float = 2.0
    ) -> list[tuple[float, float, int]]:
        """The 429s seen in [start, end) grouped into bursts (a gap of ``gap_s`` without one
        ends a burst): (first, last seconds after ``start``, 429s) each."""
        found: list[list[float]] = []
        for prev, s in zip(self.samples, self.samples[1:], strict=False):
            new = s.throttled - prev.throttled
            if not (start <= s.t < end) or new <= 0:
                continue
            t = s.t - start
            if found and t - found[-1][1] <= gap_s:
                found[-1][1], found[-1][2] = t, found[-1][2] + new
            else:
                found.append([t, t, new])
        return [(a, b, int(n)) for a, b, n in found]

    def reaches(self, start: float, end: float, level: float) -> float | None:
        """Seconds after ``start`` until the admitted rate first reaches ``level``."""
        for i, s in enumerate(self.samples):
            if start <= s.t < end and self.admitted_rate(i) >= level:
                return s.t - start
        return None


def _counts(stats: dict[str, object]) -> tuple[int, int]:
    calls = stats["calls"]
    assert isinstance(calls, dict)
    total = sum(sum(v.values()) for k, v in calls.items() if k != "token")
    t429 = sum(v.get("429", 0) for k, v in calls.items() if k != "token")
    return total, t429


@contextlib.asynccontextmanager
async def sampling(stack: Stack, every_s: float = 0.25) -> AsyncIterator[Timeline]:
    """``async with sampling(stack) as tl:`` samples until the block ends."""
    assert stack.redis is not None
    assert stack.sandbox is not None
    sandbox = stack.sandbox
    client = redis_sync.Redis.from_url(stack.redis.url)
    tenant = stack.env.get("PROVISIONER_TENANT_ID") or sandbox.tenant_id
    key = Keys(stack.env.get("PROVISIONER_QUEUE_NAME", "provisioner:queue")).tenant_bucket(tenant)
    timeline = Timeline()
    t0 = time.monotonic()

    def sample() -> Sample:
        rate = client.hget(key, "cur")
        total, t429 = _counts(sandbox.stats())
        limit = int(sandbox.faults().get("rate_limit", 0))
        return Sample(time.monotonic() - t0, float(rate or 0), total, t429, limit)

    async def loop() -> None:
        while True:
            timeline.samples.append(await asyncio.to_thread(sample))
            await asyncio.sleep(every_s)

    task = asyncio.create_task(loop())
    try:
        yield timeline
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        timeline.samples.append(await asyncio.to_thread(sample))
        client.close()
