"""The tenant throttle against real Redis: cool-down, shared token bucket, no wasted slots, and
the adaptive rate (slow start, one cut per congestion event, the usage header, the ceiling)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable

import pytest
from redis.asyncio import Redis

from sandbox.faults import FaultEngine, FaultProfile
from service.core.keys import Keys
from service.core.models import State
from tests.helpers.records import K, new_store, rec
from workers.workflow.throttle import AdaptiveRate, Slot, Throttle, parse_usage


def _pair(redis: Redis, **kw: float) -> tuple[Throttle, Throttle]:
    """Two workers' throttles for one tenant."""
    rate, burst = kw.get("rate", 10.0), int(kw.get("burst", 2))
    return (
        Throttle(redis, "t", "tenant", rate_per_s=rate, burst=burst),
        Throttle(redis, "t", "tenant", rate_per_s=rate, burst=burst),
    )


async def test_one_workers_429_holds_every_worker(redis: Redis) -> None:
    a, b = _pair(redis, rate=0)
    began = time.monotonic()
    await a.hold(2.0)
    seconds, cooling = await b.pace()
    assert cooling
    # what is left of the 2 s hold: 2 s less the time since it was set (a busy machine)
    assert 2.0 - (time.monotonic() - began) - 0.01 <= seconds <= 2.0
    await a.hold(0.5)  # a shorter hold never shortens the running cool-down
    assert (await b.pace())[0] >= 2.0 - (time.monotonic() - began) - 0.01


async def test_the_bucket_is_shared_between_workers(redis: Redis) -> None:
    a, b = _pair(redis, rate=10, burst=2)
    began = time.monotonic()
    dues = []  # when each slot is due, from the start (however slow the asking was)
    for i in range(6):
        seconds = (await (a if i % 2 else b).pace())[0]
        dues.append(time.monotonic() - began + seconds)
    # the burst at once, then one slot every 0.1 s, handed out in order across both workers
    # (the asks take time too: a slot is never due before it was asked for)
    asking = time.monotonic() - began
    gaps = [later - earlier for earlier, later in itertools.pairwise(dues[1:])]
    assert all(gap >= 0.08 for gap in gaps), gaps  # never closer than the rate
    assert dues[1] < 0.08 <= dues[2]  # the burst of two, then the rate
    assert dues[-1] <= asking + 0.42  # slots are handed out back to back, none skipped


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


# -- the adaptive rate ---------------------------------------------------------------------
ADAPTIVE = AdaptiveRate(start=10, slow_start_doubling_s=0.5, recover_s=3.0, beta=0.7)


def _adaptive(redis: Redis, **kw: float) -> Throttle:
    return Throttle(redis, "t", "tenant", adaptive=ADAPTIVE, rate_per_s=kw.get("ceiling", 0.0))


async def _state(redis: Redis) -> dict[str, float]:
    raw = await redis.hgetall(Keys("t").tenant_bucket("tenant"))
    return {k.decode(): float(v) for k, v in raw.items()}


async def _callers(throttle: Throttle, n: int, seconds: float, answer: Callable[[], None]) -> int:
    """``n`` callers each taking slots (and waiting them out) for ``seconds``; every slot is
    answered by ``answer`` (which reports to the throttle). Returns the slots used."""
    used = 0
    end = time.monotonic() + seconds

    async def one() -> None:
        nonlocal used
        while time.monotonic() < end:
            slot = await throttle.acquire(max_wait_s=2)
            await asyncio.sleep(slot.wait_s)
            if not slot.cooling:
                used += 1
                answer()

    await asyncio.gather(*(one() for _ in range(n)))
    return used


async def test_adaptive_starts_at_the_start_rate_and_grows_only_while_callers_queue(
    redis: Redis,
) -> None:
    t = _adaptive(redis)
    first = await t.acquire()
    assert first.rate == 10.0
    assert first.wait_s == 0.0
    assert not first.cooling
    # one caller at a time, well below the rate: nothing to learn, the rate stays
    for _ in range(5):
        await asyncio.sleep(0.15)
        t.observe(None)
        await t.acquire()
    assert t.rate < 12
    # 20 callers queueing for slots: slow start doubles the rate (within 2 x what was sent)
    used = await _callers(t, 20, 1.5, lambda: t.observe(None))
    assert t.rate > 25, t.rate
    assert used < 1.5 * t.rate


async def test_a_few_calls_in_a_row_go_at_once_in_the_slow_start_only(redis: Redis) -> None:
    """One request's calls in a row do not wait for slots at 10 calls/s while nothing is known
    (a burst of ``slow_start_burst``); once the rate follows Graph, the burst is 1 at that rate."""
    t = _adaptive(redis)
    waits = [(await t.acquire()).wait_s for _ in range(ADAPTIVE.slow_start_burst + 1)]
    assert waits[: ADAPTIVE.slow_start_burst] == [0.0] * ADAPTIVE.slow_start_burst
    assert waits[-1] > 0.05  # the next one waits for the rate
    await asyncio.sleep(0.5)  # the bucket fills again
    slot = await t.acquire()
    await t.throttled(0.0, slot)  # a 429 without Retry-After: out of the slow start
    await asyncio.sleep(0.5)
    waits = [(await t.acquire()).wait_s for _ in range(2)]
    assert waits[0] == 0.0, waits
    assert waits[1] > 0.05, waits


async def test_callers_in_a_long_line_ask_about_once_per_turn(redis: Redis) -> None:
    t = _adaptive(redis, ceiling=20)  # 200 callers for 20 calls/s: 10 s of line
    asks = used = 0
    end = time.monotonic() + 2.0

    async def one() -> None:
        nonlocal asks, used
        while time.monotonic() < end:
            slot = await t.acquire()
            asks += 1
            await asyncio.sleep(slot.wait_s)
            if not slot.cooling:
                used += 1
                t.observe(None)

    await asyncio.gather(*(one() for _ in range(200)))
    # Told to come back behind the callers already waiting (at most a second later), each asks
    # about once a second, not four times (the old half-horizon come-back: > 800 asks here).
    assert used <= (2.0 + 0.5) * 20 + 2  # the rate (the last slots reserved up to 0.5 s ahead)
    assert asks <= 200 * 2 + 3 * used, (asks, used)


async def test_a_429_cuts_once_per_congestion_event_and_holds_every_worker(redis: Redis) -> None:
    a, b = _adaptive(redis), _adaptive(redis)
    await _callers(a, 20, 1.2, lambda: a.observe(None))  # some rate, some answered calls
    before = (await _state(redis))["cur"]
    burst = [await b.acquire() for _ in range(3)]  # three calls of one burst, all answered 429
    cut_at = time.monotonic()
    await b.throttled(1.0, burst[0])
    after = await _state(redis)
    assert after["cur"] <= 0.7 * before + 0.01
    assert after["wmax"] <= before
    for slot in burst[1:]:  # reserved before the cut: the same event, no second cut
        await a.throttled(1.0, slot)
    assert (await _state(redis))["cur"] == after["cur"]
    held = await a.acquire()
    assert held.cooling
    assert 1.0 - (time.monotonic() - cut_at) - 0.01 <= held.wait_s <= 1.0
    await asyncio.sleep(held.wait_s)
    later = await a.acquire()  # reserved after the cut: a 429 now is a new event
    assert not later.cooling
    await a.throttled(0.0, later)
    assert (await _state(redis))["cur"] < after["cur"]


class Tenant:
    """Graph's side: the sandbox's own sliding-window limiter (sandbox.faults), R calls/s,
    429 + Retry-After 1 s beyond it, x-ms-throttle-limit-percentage above 80% of it."""

    def __init__(self, rate: int) -> None:
        profile = FaultProfile(rate_limit=rate, rate_window_s=1.0)
        self.engine = FaultEngine(profile, clock=time.monotonic, wall_clock=time.time)
        self.log: list[tuple[float, bool]] = []  # (when, answered 429)

    def set_limit(self, rate: int) -> None:
        self.engine.profile = self.engine.profile.merged({"rate_limit": rate})

    async def call(self, throttle: Throttle, slot: Slot) -> None:
        throttled = self.engine.rate_limited("tenant") is not None
        self.log.append((time.monotonic(), throttled))
        if throttled:
            await throttle.throttled(1.0, slot)
        else:
            throttle.observe(parse_usage(self.engine.limit_percentage("tenant")))

    def ratio_429(self, since: float = 0.0) -> float:
        calls = [t for when, t in self.log if when >= since]
        return sum(calls) / max(len(calls), 1)

    def last_429(self) -> float:
        return max((when for when, t in self.log if t), default=0.0)


async def _drive(throttles: list[Throttle], tenant: Tenant, n: int, seconds: float) -> None:
    """``n`` callers per throttle (one per worker) calling the tenant for ``seconds``."""
    end = time.monotonic() + seconds

    async def one(throttle: Throttle) -> None:
        while time.monotonic() < end:
            slot = await throttle.acquire(max_wait_s=2)
            await asyncio.sleep(slot.wait_s)
            if not slot.cooling and not throttle.superseded(slot):
                await tenant.call(throttle, slot)

    await asyncio.gather(*(one(t) for t in throttles for _ in range(n)))


async def _until_rate(
    throttles: list[Throttle], tenant: Tenant, redis: Redis, rate: float, seconds: float
) -> float | None:
    """Callers as in :func:`_drive`, without a break, until the shared rate reaches ``rate``:
    the seconds that took, or None after ``seconds``. (Driving in rounds of a second left the
    bucket idle between rounds, and the rate grows only while callers queue: under a loaded
    machine the pauses alone took the recovery past 30 s.)"""
    began = time.monotonic()
    drive = asyncio.create_task(_drive(throttles, tenant, 15, seconds))
    try:
        while not drive.done():
            if (await _state(redis))["cur"] >= rate:
                return time.monotonic() - began
            await asyncio.sleep(0.1)
        return None
    finally:
        drive.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await drive


async def test_finds_an_unknown_limit_backs_off_on_a_drop_and_recovers(redis: Redis) -> None:
    workers = [_adaptive(redis), _adaptive(redis)]  # two workers, one tenant
    tenant = Tenant(30)
    began = time.monotonic()
    await _drive(workers, tenant, 15, 8.0)
    state = await _state(redis)
    assert 0.8 * 30 <= state["cur"] <= 30, state  # converged below R
    assert tenant.ratio_429(since=began + 3) < 0.02  # past the slow start: < 2% answered 429
    assert tenant.ratio_429() < 0.05
    tenant.set_limit(10)  # the limit drops: the burst of 429s stops within seconds
    dropped = time.monotonic()
    await _drive(workers, tenant, 15, 10.0)
    # Isolated 429s can follow the burst for a few seconds (docs/benchmarks.md, issue 14: "burst
    # met, isolated missed"); what must hold is that they stop: the last 3 s have none.
    assert tenant.last_429() - dropped < 7.0
    assert (await _state(redis))["cur"] <= 10
    tenant.set_limit(30)  # and comes back: the rate recovers within 30 s
    recovered = await _until_rate(workers, tenant, redis, 0.8 * 30, 30.0)
    assert recovered is not None
    assert recovered < 30


async def test_a_configured_ceiling_is_never_exceeded(redis: Redis) -> None:
    t = _adaptive(redis, ceiling=15)
    tenant = Tenant(100)  # the tenant would allow far more
    rates: list[float] = []
    real_call = tenant.call

    async def call(throttle: Throttle, slot: Slot) -> None:
        rates.append(slot.rate)
        await real_call(throttle, slot)

    tenant.call = call  # type: ignore[method-assign]
    await _drive([t], tenant, 30, 3.0)
    assert max(rates) <= 15.0
    per_second = [
        sum(1 for when, _ in tenant.log if int(when) == s) for s in {int(w) for w, _ in tenant.log}
    ]
    assert max(per_second) <= 15 + 1  # + the burst of one
    assert tenant.ratio_429() == 0


async def test_two_throttles_share_the_adaptive_state(redis: Redis) -> None:
    a, b = _adaptive(redis), _adaptive(redis)
    await _callers(a, 20, 1.2, lambda: a.observe(None))
    slot = await b.acquire()
    # b was never told anything itself: it paces at the shared rate a's calls raised
    assert slot.rate > AdaptiveRate().start
    assert slot.rate == pytest.approx(float((await _state(redis))["cur"]), rel=0.05)
    await a.throttled(0.0, await a.acquire())
    assert (await b.acquire()).rate < slot.rate  # a's 429 slowed b down


def test_usage_header_values() -> None:
    assert parse_usage("0.85") == 0.85
    assert parse_usage("1.8") == 1.8
    assert parse_usage("85") == 0.85  # sent as a percentage
    assert parse_usage(None) is None
    assert parse_usage("n/a") is None
    assert parse_usage("0") is None


async def test_a_slot_taken_with_a_save_comes_from_the_same_bucket(redis: Redis) -> None:
    a, b = _pair(redis, rate=10, burst=1)
    store = new_store(redis)
    record, _ = await store.accept(rec())
    record.state = State.RUNNING
    ahead = a.take_ahead()
    assert ahead is not None
    began = time.monotonic()
    await store.save(record, then=ahead.then)
    slot = a.taken(ahead)
    assert slot is not None
    assert slot.wait_s == 0.0
    assert not slot.cooling
    assert not a.stale(slot)
    seconds, _ = await b.pace()  # the burst of one went to the save's take
    assert seconds >= 0.1 - (time.monotonic() - began) - 0.01
    await asyncio.sleep(AdaptiveRate().late_s + 0.05)
    assert a.stale(slot)  # too late to call on: the caller takes a new one


async def test_a_take_that_did_not_run_hands_its_reports_to_the_next(redis: Redis) -> None:
    throttle = Throttle(redis, "t", "tenant", adaptive=AdaptiveRate())
    store = new_store(redis)
    record, _ = await store.accept(rec())
    record.state = State.RUNNING
    throttle.observe(0.9)
    throttle.observe(None)
    ahead = throttle.take_ahead()
    assert ahead is not None
    assert ahead.answered == 2
    assert ahead.usage == 0.9
    await redis.set(K.cancel(record.id), "1")
    assert await store.save(record, then=ahead.then) is True
    assert throttle.taken(ahead) is None  # the save found the cancel: no take ran
    again = throttle.take_ahead()
    assert again is not None
    assert again.answered == 2
    assert again.usage == 0.9


def test_no_take_ahead_without_coordination(redis: Redis) -> None:
    off = Throttle(redis, "t", "tenant", rate_per_s=1, burst=1, coordinate=False)
    assert off.take_ahead() is None
