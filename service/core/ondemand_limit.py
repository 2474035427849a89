"""The tenant's provisionOnDemand limiter, shared by every worker through Redis.

Graph allows 5 provisionOnDemand calls per 10 seconds per tenant (the provisionOnDemand
reference page). One sorted set per tenant (:meth:`service.core.keys.Keys.on_demand_window`)
holds the times of the calls made within the window; a Lua script, using Redis's own clock so
that workers on different hosts agree, drops the expired ones and either records a new call
(answer 0) or tells how many milliseconds until the oldest one leaves the window. A slot is
taken right before the call is sent, so each retry of a call takes one too.
"""

from __future__ import annotations

import uuid
from typing import Any

from redis.asyncio import Redis

from service.core.keys import Keys
from service.core.redis import guarded

# KEYS[1] the window; ARGV[1] limit, ARGV[2] window ms, ARGV[3] a unique member.
# Returns 0 when the call may go now (and records it), else the ms to wait.
_SLIDING_WINDOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now)
"""


class OnDemandLimiter:
    """At most ``limit`` provisionOnDemand calls per ``window_s`` per tenant, all workers."""

    def __init__(
        self, redis: Redis, keys: Keys, tenant: str, *, limit: int = 5, window_s: float = 11.0
    ) -> None:
        self._redis = redis
        self._key = keys.on_demand_window(tenant)
        self.limit = limit
        self.window_ms = int(window_s * 1000)

    async def acquire(self) -> float:
        """Take a slot: 0.0 when the call may be sent now, else the seconds to wait first."""
        member = uuid.uuid4().hex

        async def run() -> Any:
            return await self._redis.eval(  # type: ignore[misc]
                _SLIDING_WINDOW, 1, self._key, str(self.limit), str(self.window_ms), member
            )

        wait_ms = int(await guarded(run))
        return wait_ms / 1000
