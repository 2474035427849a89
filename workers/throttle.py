"""Tenant-wide throttle coordination: one worker's 429 makes every worker wait.

Graph throttles per app and tenant, so when one worker is told ``Retry-After: N`` the others
would only collect their own 429s by carrying on. The first to hear it sets a cool-down key in
Redis that lives N seconds; every worker checks it before each call to that tenant.
"""

from __future__ import annotations

from redis.asyncio import Redis

from service.store import guarded

# Extends the cool-down to ARGV[1] ms unless it already lasts longer (PX GT needs Redis 7).
_HOLD = """
local left = redis.call('PTTL', KEYS[1])
if left < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
  return 1
end
return 0
"""


class Throttle:
    """The cool-down of one tenant, shared by every worker on the same Redis."""

    def __init__(self, redis: Redis, prefix: str, tenant: str) -> None:
        self._redis = redis
        self._key = f"{prefix}:cooldown:{tenant}"

    async def remaining_s(self) -> float:
        """Seconds left in the tenant's cool-down (0 when none)."""
        ms = await guarded(lambda: self._redis.pttl(self._key))
        return max(0, int(ms)) / 1000

    async def hold(self, seconds: float) -> None:
        """Make every worker hold calls to the tenant for at least ``seconds``."""
        ms = int(seconds * 1000)
        if ms > 0:
            await guarded(lambda: self._redis.eval(_HOLD, 1, self._key, str(ms)))  # type: ignore[arg-type,return-value]
