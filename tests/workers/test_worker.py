"""workers/worker.py: the arq worker's functions, crons and bounds, as built for the settings."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from arq import create_pool
from arq.worker import Worker, func
from redis.asyncio import Redis

from service.core.application_store import HEALTH_CALLBACK_FUNCTION, HEALTH_WRITEBACK_FUNCTION
from service.core.queue import CALLBACK_FUNCTION, FUNCTION, WRITEBACK_FUNCTION, job_serializer
from service.core.redis import arq_redis_settings
from service.core.settings import Settings, load_settings
from service.core.store import Store
from tests.helpers.records import QUEUE, K, rec
from workers.worker import build_worker, recovery_bound_s, run_bound_s

NOTIFICATIONS = (
    WRITEBACK_FUNCTION,
    CALLBACK_FUNCTION,
    HEALTH_CALLBACK_FUNCTION,
    HEALTH_WRITEBACK_FUNCTION,
)


def test_every_job_function_is_registered_with_its_timeout() -> None:
    settings = load_settings(step_timeout_s=60, callback_timeout_s=10)
    worker = build_worker(settings)
    crons = {c.name for c in worker.cron_jobs}
    jobs = {name: f for name, f in worker.functions.items() if name not in crons}
    assert sorted(jobs) == sorted((FUNCTION, *NOTIFICATIONS))
    assert jobs[FUNCTION].timeout_s == 60
    for name in NOTIFICATIONS:  # one HTTP call each: the callback timeout and a margin
        assert jobs[name].timeout_s == 15, name
    assert {f.keep_result_s for f in jobs.values()} == {0}


def test_the_crons_follow_the_settings() -> None:
    on = build_worker(load_settings(watch_enabled=True, watch_interval_s=5))
    assert sorted(c.name for c in on.cron_jobs) == ["reconcile", "watch"]
    off = build_worker(load_settings(watch_enabled=False))
    assert [c.name for c in off.cron_jobs] == ["reconcile"]


def test_a_run_ends_before_arq_times_it_out() -> None:
    short = load_settings(step_timeout_s=6, callback_timeout_s=1)
    long = load_settings(step_timeout_s=60)
    assert run_bound_s(short) == 4.5
    assert run_bound_s(long) == 55
    assert recovery_bound_s(long) == 70


def _holding_worker(
    settings: Settings, hold: Callable[..., Awaitable[None]], **extra: Any
) -> Worker:
    """Our worker class running only ``hold``, polling fast, without crons or start-up."""
    return build_worker(
        settings,
        functions=[func(hold, name="hold")],
        cron_jobs=[],
        on_startup=None,
        on_shutdown=None,
        handle_signals=False,
        poll_delay=0.01,
        **extra,
    )


async def test_a_poll_does_not_recheck_the_jobs_this_worker_runs(
    redis: Redis, redis_url: str
) -> None:
    # arq leaves a running job in its queue; every poll used to WATCH/EXISTS/ZSCORE it again
    started, release = asyncio.Event(), asyncio.Event()

    async def hold(ctx: dict[str, Any]) -> None:
        started.set()
        await release.wait()

    settings = load_settings(redis_url=redis_url)
    worker = _holding_worker(settings, hold)
    pool = await create_pool(
        arq_redis_settings(redis_url), job_serializer=job_serializer, default_queue_name=""
    )
    try:
        await pool.enqueue_job("hold", _queue_name=settings.queue_name)
        task = asyncio.create_task(worker.async_run())
        await asyncio.wait_for(started.wait(), 10)
        before, polls = await _calls(redis, "watch"), await _calls(redis, "zrangebyscore")
        while await _calls(redis, "zrangebyscore") < polls + 10:  # ten polls, the job running
            await asyncio.sleep(0.005)
        assert await _calls(redis, "watch") == before
        release.set()
        await worker.close()
        task.cancel()
    finally:
        await pool.aclose()


async def _calls(redis: Redis, command: str) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_two_workers_pick_up_each_job_once_without_a_watch(
    redis: Redis, redis_url: str
) -> None:
    """A poll claims its due jobs in one script (no WATCH/EXISTS/ZSCORE per job), with arq's
    rules: two workers polling the same queue never run a job twice."""
    runs: list[str] = []
    release = asyncio.Event()

    async def hold(ctx: dict[str, Any], n: int) -> None:
        runs.append(ctx["job_id"])
        await release.wait()

    settings = load_settings(redis_url=redis_url)
    workers = [_holding_worker(settings, hold, max_jobs=40) for _ in range(2)]
    pool = await create_pool(
        arq_redis_settings(redis_url), job_serializer=job_serializer, default_queue_name=""
    )
    tasks: list[asyncio.Task[None]] = []
    try:
        for n in range(60):
            await pool.enqueue_job("hold", n, _queue_name=settings.queue_name)
        watches = await _calls(redis, "watch")  # arq's enqueue_job WATCHes; the polls must not
        tasks = [asyncio.create_task(w.async_run()) for w in workers]

        async def all_running() -> None:
            while len(runs) < 60:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(all_running(), 60)
        await asyncio.sleep(0.2)  # more polls while all 60 run
        assert sorted(runs) == sorted(set(runs))
        assert await _calls(redis, "watch") == watches
        assert sorted(w.job_counter for w in workers) == [20, 40]
    finally:
        release.set()
        for _ in range(500):  # arq's close cancels the jobs still running: let them end first
            if all(t.done() for w in workers for t in w.tasks.values()):
                break
            await asyncio.sleep(0.01)
        for w in workers:
            await w.close()
        for t in tasks:
            t.cancel()
        await pool.aclose()


async def test_a_new_request_is_picked_up_when_announced_not_at_the_next_poll(
    store: Store, redis: Redis, redis_url: str
) -> None:
    """The accept announces a job due now on the queue's wake channel: a worker that polls
    only every 60 s starts it at once (issue 14.5: no half poll interval of pick-up)."""
    started = asyncio.Event()

    async def hold(ctx: dict[str, Any], request_id: str) -> None:
        started.set()

    settings = load_settings(redis_url=redis_url, queue_name=QUEUE)
    worker = build_worker(
        settings,
        functions=[func(hold, name=FUNCTION)],
        cron_jobs=[],
        on_startup=None,
        on_shutdown=None,
        handle_signals=False,
        poll_delay=60,
    )
    task = asyncio.create_task(worker.async_run())
    try:
        while not (await redis.pubsub_numsub(K.wake))[0][1]:  # its first poll found nothing
            await asyncio.sleep(0.01)
        await store.accept(rec())
        await asyncio.wait_for(started.wait(), 20)  # well inside the 60 s poll
        while worker.job_counter:
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await worker.close()
