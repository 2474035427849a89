"""A per-caller cap on notifications (callbacks, ticket write-backs) waiting for a retry.

A caller whose receiver always fails would otherwise keep up to 7 retries per request queued for
24 hours, all of them worker time. Each notification that fails and is to be retried joins the
caller's sorted set ``{p}:callbacks-pending:{caller}`` (score: the end of its retry window);
when ``PROVISIONER_CALLBACK_MAX_PENDING`` of that caller's are already waiting, a newly failing
one is given up at once (recorded on its record) instead of being re-queued. A delivered or
abandoned notification leaves the set; members past their window are dropped as the set is
used. Provisioning work is never counted here, and this never counts against the intake queue
cap (service/api/ratelimit.py).
"""

from __future__ import annotations

import time
from datetime import datetime

from redis.asyncio import Redis

from service.core.keys import Keys
from service.core.redis import guarded
from service.core.settings import Settings

__all__ = ["PendingNotifications"]

# KEYS[1] the caller's set; ARGV[1] now (s), ARGV[2] member, ARGV[3] its window end (s),
# ARGV[4] the cap, ARGV[5] the key's TTL (s). Returns 1 when the member may wait, else 0.
_JOIN = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local known = redis.call('ZSCORE', KEYS[1], ARGV[2])
if not known and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


class PendingNotifications:
    """One caller's notifications awaiting a retry."""

    def __init__(self, redis: Redis, settings: Settings, caller: str) -> None:
        self.redis = redis
        self.cap = settings.callback_max_pending
        self.window_s = settings.callback_window_s
        self.key = Keys(settings.queue_name).callbacks_pending(caller)

    async def wait(self, notification: str, ended_at: datetime) -> bool:
        """Count ``notification`` as waiting for a retry; False when the caller is at its cap."""
        if self.cap <= 0:
            return True
        window_end = ended_at.timestamp() + self.window_s

        async def run() -> int:
            result = await self.redis.eval(  # type: ignore[misc]
                _JOIN,
                1,
                self.key,
                str(time.time()),
                notification,
                str(window_end),
                str(self.cap),
                str(int(self.window_s) + 3600),
            )
            return int(result)

        return bool(await guarded(run))

    async def done(self, notification: str) -> None:
        """``notification`` waits no more (delivered or given up)."""
        if self.cap > 0:
            await guarded(lambda: self.redis.zrem(self.key, notification))

    async def count(self) -> int:
        """How many of the caller's notifications wait for a retry now."""
        now = time.time()
        return int(await guarded(lambda: self.redis.zcount(self.key, now, "+inf")))
