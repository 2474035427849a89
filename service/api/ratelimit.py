"""Intake limits: a per-caller rate limit (429 + Retry-After) and a global queue-depth cap (503).

The cap counts provisioning work only: the requests that are queued or running (the
``{p}:state:queued`` and ``{p}:state:running`` indexes), not arq's whole queue, which also holds
callbacks and ticket write-backs waiting for their next retry and the reconciler's next run. So
one caller's failing callback receiver cannot make intake answer 503 for everyone (callbacks
have their own per-caller cap, ``PROVISIONER_CALLBACK_MAX_PENDING``, in workers/notify).

The rate limit is a GCRA (generic cell rate algorithm) kept in Redis, so it holds across API
replicas: ``limit`` requests per ``window_s`` seconds, all of which may come at once, then one
every ``window_s / limit`` seconds. One key per caller (``{p}:intake:{caller}``) holding the
"theoretical arrival time"; the script reads Redis' own clock, so API hosts' clocks do not matter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from redis.asyncio import Redis

from service.core.keys import Keys
from service.core.models import State
from service.core.redis import guarded

__all__ = ["IntakeLimits", "LimitDecision"]

# KEYS[1] the caller's key; ARGV[1] emission interval (us), ARGV[2] window (us).
# Returns 0 when allowed, else the microseconds to wait.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
if new_tat - now > window then
  return new_tat - now - window
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return 0
"""


@dataclass(frozen=True, slots=True)
class LimitDecision:
    """Whether a request may go on; when not, after how many whole seconds to retry."""

    allowed: bool
    retry_after_s: int = 0


class IntakeLimits:
    """The two intake limits; a limit of 0 is off."""

    def __init__(
        self, redis: Redis, *, prefix: str, rate_limit: int, window_s: float, max_queue_depth: int
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.rate_limit = rate_limit
        self.window_s = window_s
        self.max_queue_depth = max_queue_depth

    async def take(self, caller: str) -> LimitDecision:
        """Count one intake request of ``caller`` against its rate."""
        if self.rate_limit <= 0:
            return LimitDecision(True)
        window_us = int(self.window_s * 1_000_000)
        interval_us = max(1, window_us // self.rate_limit)
        key = Keys(self.prefix).intake_limit(caller)

        async def run() -> int:
            result = await self.redis.eval(  # type: ignore[misc]
                _GCRA, 1, key, str(interval_us), str(window_us)
            )
            return int(result)

        wait_us = await guarded(run)
        if wait_us <= 0:
            return LimitDecision(True)
        return LimitDecision(False, max(1, math.ceil(wait_us / 1_000_000)))

    async def queue_depth(self) -> int:
        """How many provisioning requests are queued or running (callbacks not counted)."""
        keys = Keys(self.prefix)

        async def run() -> int:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zcard(keys.by_state(State.QUEUED.value))
                pipe.zcard(keys.by_state(State.RUNNING.value))
                return sum(int(n) for n in await pipe.execute())

        return await guarded(run)

    async def queue_full(self) -> bool:
        """True when ``max_queue_depth`` provisioning requests or more are queued or running."""
        if self.max_queue_depth <= 0:
            return False
        return await self.queue_depth() >= self.max_queue_depth
