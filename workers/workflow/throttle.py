"""Tenant-wide throttle coordination, shared by every worker through Redis.

Graph throttles per app and tenant and does not publish the limit, so what one worker learns
applies to all of them, and the workers learn it together:

- **Cool-down.** When a worker is told ``429 Retry-After: N``, every worker holds its calls to
  that tenant for N seconds (Retry-After is a floor), instead of each collecting its own 429
  (except for an isolated 429 at a known limit, below).
- **Adaptive rate** (on by default, ``PROVISIONER_TENANT_RATE_ADAPTIVE``). One shared rate per
  tenant, in the style of TCP CUBIC and the AWS SDKs' adaptive retry mode: a slow start from
  :attr:`AdaptiveRate.start` (doubling while calls queue for slots), cubic growth back to and
  then past the last known limit while calls succeed, and a multiplicative cut (``beta``) on a
  429 - once per congestion event: a 429 for a call reserved before the last cut is part of the
  event that cut already answered. A sparse 429 while Graph's usage reports are fresh (at most
  one other, or ``sparse_share`` of the limit, in about ``isolated_s``) is the edge of a known
  limit: a small cut (``beta_fresh``), and only the throttled call waits its Retry-After;
  every other 429 holds every worker. Where Graph reports ``x-ms-throttle-limit-percentage``
  (sent above 80% of the limit), the rate moves to ``target_usage`` of the limit it implies
  (the calls answered in the last second over that usage, averaged over ``estimate_s``), and
  at least ``headroom`` calls/s below it, so the limit is found without a 429 at all; a 429
  for a call sent from that plateau lowers the target by a learned margin (``margin_step``
  calls/s, so the 429s it allows are a share of the calls at any limit).
- **Ceiling.** ``PROVISIONER_TENANT_RATE_LIMIT`` caps the adaptive rate; with the adaptive rate
  off it is a fixed token bucket (bursts of ``PROVISIONER_TENANT_RATE_BURST``).

A call costs one Redis round trip (:data:`~workers.workflow.rate_scripts.TAKE` checks the
cool-down, updates the rate and reserves a slot), plus about one per turn it waits in a line
longer than the horizon; a 429 costs one more. A call that follows a step's save takes its
slot in the save's round trip (:meth:`Throttle.take_ahead`).
``PROVISIONER_THROTTLE_COORDINATION=false`` turns all of it off (each worker then only honours
the Retry-After of its own calls), which is how the benchmark measures what coordination buys.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import cast

from redis.asyncio import Redis

from service.core.keys import Keys
from service.core.redis import guarded
from service.core.store_save import Then
from workers.workflow.rate_scripts import TAKE, THROTTLED


@dataclass(frozen=True)
class AdaptiveRate:
    """The constants of the adaptive rate, in one place (calls/s, seconds)."""

    start: float = 10.0  # the rate before anything is known about the tenant
    # Never slower, whatever Graph said: 429s that do not follow our own rate (another app's
    # load on the tenant, Graph's service-wide throttling) would otherwise cut the rate to a
    # crawl; each 429's Retry-After is still honoured by every worker.
    min_rate: float = 5.0
    max_rate: float = 5000.0  # never faster without a configured ceiling (Graph: 2000/s per app)
    target_usage: float = 0.95  # the share of the reported limit to aim at
    # ... and at least this many calls/s below it: calls reach Graph some tens of ms early or
    # late, which costs a similar number of calls of its 1 s window at any limit. At 20
    # calls/s the share alone left one call of room, and after a drop of the limit to 20 the
    # edge's 429s came back every few seconds (docs/benchmarks.md, A).
    headroom: float = 2.0
    beta: float = 0.7  # on a 429: the rate becomes beta x the rate that was throttled
    beta_fresh: float = 0.9  # ... when Graph reported its usage within ``fresh_s`` (limit known)
    fresh_s: float = 1.0
    # A 429 at a known limit (a fresh estimate) with fewer others in about ``isolated_s`` than
    # ``sparse_share`` of the limit (at least half a 429) holds only its own call for
    # Retry-After, not every worker: the edge of the limit, not congestion.
    isolated_s: float = 1.0
    sparse_share: float = 0.02
    estimate_s: float = 0.5  # time constant of the limit estimate
    late_s: float = 0.075  # a paced slot woken up later than this is given up (no bunched calls)
    comeback_s: float = 1.0  # a caller in line past the horizon asks again at most this late
    # A 429 for a call sent at the target of a known limit lowers the target rate by
    # ``margin_step`` calls/s (a share of 0.03 at 20 calls/s, 0.003 at 200; at most
    # ``margin_max`` of the limit), halving every ``margin_half_life_s``: a tenant whose calls
    # reach Graph bunched (jitter costs a few calls of a 1 s window at any limit) is given
    # room, and after a drop of the limit the 429s at the new edge stop instead of recurring.
    margin_step: float = 0.6
    margin_max: float = 0.10  # the target stays above 0.8, where Graph reports its usage
    margin_half_life_s: float = 10.0
    recover_s: float = 3.0  # the cubic is back at the throttled rate this long after the cool-down
    slow_start_doubling_s: float = 0.5  # before the first signal the rate doubles this often
    release_s: float = 2.0  # a limit estimate not confirmed for this long is dropped (probe)
    burst_s: float = 0.05  # bucket burst = this many seconds of the rate (>= 1 call)
    # ... and at least this many calls in the slow start with no ceiling configured: at 10
    # calls/s and a burst of 1, a lone request's calls in a row waited for their slots (+60 ms
    # from POST to started)
    slow_start_burst: int = 3
    idle_ttl_s: float = 600.0  # a tenant's state is forgotten after this long unused
    horizon_s: float = 0.5  # slots are reserved at most this far ahead (a new rate applies)

    @property
    def cubic_c(self) -> float:
        """Scale-free CUBIC constant: rate(t) = wmax (1 + C (t - K)^3), K = ``recover_s``."""
        return (1 - self.beta) / self.recover_s**3

    @property
    def recover_fresh_s(self) -> float:
        """The cubic's K after a ``beta_fresh`` cut (same curve, entered higher up)."""
        return float(self.recover_s * ((1 - self.beta_fresh) / (1 - self.beta)) ** (1 / 3))


@dataclass(frozen=True)
class Slot:
    """The answer to :meth:`Throttle.acquire`."""

    wait_s: float  # how long to wait before calling
    cooling: bool  # the wait is the tenant cool-down: nothing reserved, ask again after it
    ticket: int = 0  # server time (ms) the slot was reserved: names the rate the call used
    rate: float = 0.0  # the tenant's rate when it was reserved (0: not paced)
    local_cuts: int = 0  # this worker's 429 count when it was reserved
    due: float = 0.0  # time.monotonic() at which the wait ends
    paced: bool = False  # the rate follows Graph's signals (not the slow start's probe)


@dataclass(frozen=True, slots=True)
class Ahead:
    """A take prepared to run with a save (:meth:`Throttle.take_ahead`): the script and what
    it reports (calls answered, Graph's usage), to be reported by the next take if it did not
    run."""

    then: Then
    answered: int
    usage: float | None


def parse_usage(value: str | None) -> float | None:
    """``x-ms-throttle-limit-percentage`` as a fraction of the limit (Graph sends 0.8-1.8;
    a value above 5 is read as a percentage)."""
    if not value:
        return None
    try:
        usage = float(value.strip().rstrip("%"))
    except ValueError:
        return None
    if usage > 5:
        usage /= 100
    return usage if math.isfinite(usage) and usage > 0 else None


class Throttle:
    """The cool-down and rate of one tenant, shared by every worker on the same Redis."""

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        tenant: str,
        *,
        rate_per_s: float = 0.0,
        burst: int = 10,
        coordinate: bool = True,
        adaptive: AdaptiveRate | None = None,
    ) -> None:
        self._redis = redis
        self._take = redis.register_script(TAKE)  # EVALSHA: the script is not resent per call
        self._throttled = redis.register_script(THROTTLED)
        keys = Keys(prefix)
        self._cooldown_key = keys.cooldown(tenant)
        self._bucket_key = keys.tenant_bucket(tenant)
        self._keys = (self._bucket_key, self._cooldown_key)
        self._rate = rate_per_s  # the ceiling (adaptive) or the fixed rate; 0: none
        self._coordinate = coordinate
        self._adaptive = adaptive
        a = adaptive or AdaptiveRate()
        self._late_s = a.late_s
        # TAKE's arguments that never change, formatted once (TAKE runs before every call)
        self._take_head = ("1" if adaptive else "0", _num(rate_per_s), str(burst))
        self._take_constants = (
            *(_num(v) for v in (a.start, a.min_rate, a.max_rate, a.target_usage)),
            *(str(int(v * 1000)) for v in (a.release_s, a.slow_start_doubling_s)),
            _num(a.cubic_c),
            _num(a.burst_s),
            str(int(a.idle_ttl_s * 1000)),
            _num(a.horizon_s),
        )
        self._take_tail = (
            str(int(a.estimate_s * 1000)),
            str(int(a.comeback_s * 1000)),
            str(int(a.margin_half_life_s * 1000)),
            str(a.slow_start_burst),
            _num(a.headroom),
        )
        self._usage: float | None = None  # reported by Graph since the last take
        self._answered = 0  # calls answered (not 429) since the last take
        self.cuts = 0  # 429s this worker reported
        self.takes = 0  # slots asked for in a round trip of their own, and with a save
        self.takes_ahead = 0
        self.rate = 0.0  # the tenant's rate at this worker's last take
        self.waits = 0  # how often a call had to wait, and for how long in total
        self.waited_s = 0.0

    async def delay_s(self, max_wait_s: float | None = None) -> float:
        """Seconds to wait before the next call: the cool-down, else the reserved slot's delay."""
        seconds, _ = await self.pace(max_wait_s)
        return seconds

    async def pace(self, max_wait_s: float | None = None) -> tuple[float, bool]:
        """``(seconds, cooling)`` of :meth:`acquire`."""
        slot = await self.acquire(max_wait_s)
        return slot.wait_s, slot.cooling

    async def acquire(self, max_wait_s: float | None = None) -> Slot:
        """How long to wait before the next call, and whether that is the tenant cool-down
        (then no slot is reserved: ask again after waiting it out, or every caller held by it
        would call at the same instant) or a reserved slot.

        With ``max_wait_s``, a slot further away than that is not reserved (the caller will not
        wait for it but end its run): the wait is still returned, so the caller can defer."""
        if not self._coordinate:
            return Slot(0.0, False)
        args, _, _ = self._take_args(max_wait_s)
        keys = self._keys
        self.takes += 1
        return self._slot(await guarded(lambda: self._take(keys=keys, args=args)))

    def take_ahead(self, max_wait_s: float | None = None) -> Ahead | None:
        """:meth:`acquire`'s take, as a script for the save just before the call to run in its
        own round trip (:class:`~service.core.store_save.Then`); :meth:`taken` reads its
        answer. None when workers do not coordinate (no take at all)."""
        if not self._coordinate:
            return None
        args, answered, usage = self._take_args(max_wait_s)
        return Ahead(Then(TAKE, self._keys, args), answered, usage)

    def taken(self, ahead: Ahead) -> Slot | None:
        """The slot a save's :meth:`take_ahead` reserved, or None when the save did not run it
        (cancelled): then the next take reports what it would have."""
        if ahead.then.reply is None:
            self._answered += ahead.answered
            if self._usage is None:
                self._usage = ahead.usage
            return None
        self.takes_ahead += 1
        return self._slot(ahead.then.reply)

    def stale(self, slot: Slot) -> bool:
        """Whether a slot taken ahead (:meth:`take_ahead`) is too old to call on: its time
        passed more than ``late_s`` ago (the step did something else first, e.g. waited for
        the create claim); the caller takes a new one."""
        return time.monotonic() - slot.due > self._late_s

    def _take_args(self, max_wait_s: float | None) -> tuple[tuple[str, ...], int, float | None]:
        """TAKE's ARGV, with the calls answered and the usage reported since the last take
        (handed over: the next take starts counting afresh)."""
        usage, self._usage = self._usage, None
        answered, self._answered = self._answered, 0
        max_wait = "-1" if max_wait_s is None else str(int(max_wait_s * 1000))
        args = (
            *self._take_head,
            max_wait,
            _num(usage or -1),
            *self._take_constants,
            str(answered),
            *self._take_tail,
        )
        return args, answered, usage

    def _slot(self, reply: object) -> Slot:
        kind, wait_ms, ticket, rate_milli, paced = cast(list[int], reply)
        if int(rate_milli):
            self.rate = int(rate_milli) / 1000
        seconds = self._count(int(wait_ms) / 1000)
        due = time.monotonic() + seconds
        return Slot(
            seconds, int(kind) == 1, int(ticket), self.rate, self.cuts, due, bool(int(paced))
        )

    def observe(self, usage: float | None) -> None:
        """Note a call Graph answered (anything but 429) and its
        ``x-ms-throttle-limit-percentage``; the next take reports both."""
        self._answered += 1
        if usage is not None:
            self._usage = usage

    def superseded(self, slot: Slot) -> bool:
        """Whether the slot should be given up and a new one asked for: this worker was
        throttled since ``slot`` was reserved (its spacing belongs to the rate before the cut),
        or, once the rate follows Graph's signals, the caller woke up for it more than
        ``late_s`` late (a busy event loop): late calls sent together with the ones due after
        them would reach Graph as a burst at its limit. In the slow start no limit is known, a
        burst is a probe, and re-asking there cost most of the worker's CPU at 1,000 workflows
        in flight (docs/benchmarks.md)."""
        if self.cuts > slot.local_cuts:
            return True
        if self._adaptive is not None and self.rate < 0.9 * slot.rate:
            return True  # the rate was lowered since (Graph's usage): the spacing is too tight
        return slot.paced and time.monotonic() - slot.due > self._late_s

    async def throttled(self, retry_after_s: float, slot: Slot | None, *, cut: bool = True) -> None:
        """A call reserved as ``slot`` was answered 429 (``cut``) or 503 with ``retry_after_s``:
        hold every worker that long, and cut the rate once for this congestion event."""
        if not self._coordinate:
            return
        cut = cut and self._adaptive is not None
        ms = int(retry_after_s * 1000)
        if ms <= 0 and not cut:
            return
        a = self._adaptive or AdaptiveRate()
        args = (
            str(max(ms, 0)),
            str(slot.ticket if slot else 0),
            "1" if cut else "0",
            _num(a.beta),
            _num(a.recover_s),
            _num(a.min_rate),
            _num(self._rate),
            _num(a.beta_fresh),
            _num(a.recover_fresh_s),
            str(int(a.fresh_s * 1000)),
            str(int(a.isolated_s * 1000)),
            _num(a.margin_step),
            _num(a.margin_max),
            str(int(a.margin_half_life_s * 1000)),
            _num(a.sparse_share),
        )
        keys = self._keys
        reply = await guarded(lambda: self._throttled(keys=keys, args=args))
        _, held = cast(list[int], reply)
        if cut and (int(held) or ms <= 0):
            # A congestion event: this worker's reserved slots were spaced for the rate before
            # it. An isolated 429 at a known limit (nobody held) keeps them: the cut is small.
            self.cuts += 1

    async def hold(self, seconds: float) -> None:
        """Make every worker hold calls to the tenant for at least ``seconds`` (no cut)."""
        await self.throttled(seconds, None, cut=False)

    def _count(self, seconds: float) -> float:
        if seconds > 0:
            self.waits += 1
            self.waited_s += seconds
        return seconds


def _num(value: float) -> str:
    return repr(float(value))
