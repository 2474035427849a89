"""Tenant-wide throttle coordination, shared by every worker through Redis.

Graph throttles per app and tenant, so what one worker learns applies to all of them:

- **Cool-down.** When a worker is told ``429 Retry-After: N``, it sets a key that lives N
  seconds; every worker checks it before each call to that tenant and waits it out, instead of
  each collecting its own 429.
- **Rate limit.** A token bucket (``PROVISIONER_TENANT_RATE_LIMIT`` calls per second, bursts of
  ``PROVISIONER_TENANT_RATE_BURST``) kept in Redis and updated by one Lua script, so the limit
  holds for the sum of all workers on all machines. A caller reserves a slot and is told how
  long to wait for it.

``PROVISIONER_THROTTLE_COORDINATION=false`` turns both off (each worker then only honours the
Retry-After of its own calls), which is how the benchmark measures what coordination buys.
"""

from __future__ import annotations

from redis.asyncio import Redis

from service.core.keys import Keys
from service.core.store import guarded

# Extends the cool-down to ARGV[1] ms unless it already lasts longer (PX GT needs Redis 7).
_HOLD = """
local left = redis.call('PTTL', KEYS[1])
if left < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
  return 1
end
return 0
"""

# Reserves one call: returns 0 when a token is free now, else the ms until the reserved one is.
# The bucket may go negative: that is the queue of reservations already handed out. A caller
# that cannot wait longer than ARGV[3] ms (-1: no bound) is told the wait as a negative number
# and reserves nothing: a slot it would not use must not delay everyone behind it.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1]) / 1000
local burst = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + (now - ts) * rate) - 1
local wait = 0
if tokens < 0 then wait = math.ceil(-tokens / rate) end
if max_wait >= 0 and wait > max_wait then return -wait end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate) + 1000)
return wait
"""


class Throttle:
    """The cool-down and rate limit of one tenant, shared by every worker on the same Redis."""

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        tenant: str,
        *,
        rate_per_s: float = 0.0,
        burst: int = 10,
        coordinate: bool = True,
    ) -> None:
        self._redis = redis
        keys = Keys(prefix)
        self._cooldown_key = keys.cooldown(tenant)
        self._bucket_key = keys.tenant_bucket(tenant)
        self._rate = rate_per_s
        self._burst = burst
        self._coordinate = coordinate
        self.waits = 0  # how often a call had to wait, and for how long in total
        self.waited_s = 0.0

    async def delay_s(self, max_wait_s: float | None = None) -> float:
        """Seconds to wait before the next call: the cool-down, else the reserved slot's delay."""
        seconds, _ = await self.pace(max_wait_s)
        return seconds

    async def pace(self, max_wait_s: float | None = None) -> tuple[float, bool]:
        """``(seconds, cooling)``: how long to wait before the next call, and whether that is
        the tenant cool-down (then no slot is reserved: ask again after waiting it out, or
        every caller held by it would call at the same instant) or a reserved bucket slot.

        With ``max_wait_s``, a slot further away than that is not reserved (the caller will not
        wait for it but end its run): the wait is still returned, so the caller can defer."""
        if not self._coordinate:
            return 0.0, False
        cooldown_ms = int(await guarded(lambda: self._redis.pttl(self._cooldown_key)))
        if cooldown_ms > 0:
            return self._count(cooldown_ms / 1000), True
        if self._rate <= 0:
            return 0.0, False
        wait_ms = await guarded(
            lambda: self._redis.eval(  # type: ignore[arg-type,return-value]
                _TAKE,
                1,
                self._bucket_key,
                str(self._rate),
                str(self._burst),
                "-1" if max_wait_s is None else str(int(max_wait_s * 1000)),
            )
        )
        return self._count(abs(int(wait_ms)) / 1000), False

    def _count(self, seconds: float) -> float:
        if seconds > 0:
            self.waits += 1
            self.waited_s += seconds
        return seconds

    async def hold(self, seconds: float) -> None:
        """Make every worker hold calls to the tenant for at least ``seconds``."""
        ms = int(seconds * 1000)
        if ms > 0 and self._coordinate:
            await guarded(
                lambda: self._redis.eval(_HOLD, 1, self._cooldown_key, str(ms))  # type: ignore[arg-type,return-value]
            )
