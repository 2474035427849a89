"""The arq worker: its job functions (``provision``, the notifications, the crons) and its
settings, built by :func:`build_worker`.

Jobs are JSON. Our own budgets decide when a request gives up, so ``max_tries`` is set out of
the way, and each run is bounded below arq's job timeout so a slow run is re-queued instead of
failed by arq. The resources the jobs share are in :mod:`workers.resources`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import Any

import structlog
from arq import Retry
from arq.cron import cron
from arq.worker import Worker, func
from redis.asyncio.client import PubSub
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from service.core.application_store import HEALTH_CALLBACK_FUNCTION, HEALTH_WRITEBACK_FUNCTION
from service.core.errors import StoreUnavailable
from service.core.keys import Keys, in_progress_key
from service.core.queue import (
    CALLBACK_FUNCTION,
    FUNCTION,
    WRITEBACK_FUNCTION,
    job_deserializer,
    job_serializer,
)
from service.core.redis import arq_redis_settings
from service.core.settings import Settings
from workers.metrics import WorkerMetrics
from workers.notify.callbacks import deliver_callback
from workers.notify.writeback import load_writeback, write_back
from workers.reconcile import reconcile_once
from workers.resources import shutdown, startup
from workers.watch import watch_tick
from workers.watch.notify import deliver_health_callback, write_back_health
from workers.workflow.calls import Defer
from workers.workflow.run import Deps, run_request

log = structlog.get_logger("workers.main")
MAX_TRIES = 1_000_000  # never the reason a request fails: its retry budget is
IDLE_POLL_S = 0.05  # between polls of the queue when no new job is announced
WAKE_GAP_S = 0.005  # polls woken by announcements start at least this far apart


async def provision(ctx: dict[str, Any], request_id: str) -> None:
    """arq job: run or resume one request's workflow."""
    deps: Deps = ctx["deps"]
    job_try = int(ctx.get("job_try", 1))
    bound = run_bound_s(deps.settings)
    raw = ctx.get("prefetched", {}).pop(request_id, None)  # read when the job was picked up
    deps.metrics.in_flight.inc()
    try:
        await asyncio.wait_for(run_request(deps, request_id, job_try, raw), timeout=bound)
    except Defer as d:
        raise Retry(defer=d.seconds) from d
    except StoreUnavailable as e:
        log.warning("store_unavailable", error=str(e))
        raise Retry(defer=5) from e
    except TimeoutError as e:
        log.warning("run_timed_out", bound_s=bound)
        raise Retry(defer=1) from e
    except Exception as e:
        # A bug or an unforeseen answer: retry with backoff; the request's budget bounds it.
        log.exception("workflow_crashed")
        raise Retry(defer=min(300.0, random.uniform(1, 2 ** min(job_try, 8)))) from e
    finally:
        deps.metrics.in_flight.dec()
        structlog.contextvars.clear_contextvars()


async def reconcile(ctx: dict[str, Any]) -> None:
    """arq cron job: re-enqueue orphaned requests, fail stuck ones (see workers.reconcile)."""
    deps: Deps = ctx["deps"]
    result = await reconcile_once(deps.store, deps.settings)
    if result.requeued or result.failed:
        log.info(
            "reconciled", checked=result.checked, requeued=result.requeued, failed=result.failed
        )


def run_bound_s(settings: Settings) -> float:
    """How long one run may take before it is stopped and re-queued: below arq's job timeout
    (``step_timeout_s``) by a margin that leaves time to record the outcome (5 s, or a quarter
    of a short timeout: 4.5 s of a 6 s one, not the 1 s a flat 5 s margin would leave)."""
    return settings.step_timeout_s - min(5.0, settings.step_timeout_s / 4)


def recovery_bound_s(settings: Settings) -> float:
    """Seconds after a SIGKILLed worker started a job until arq lets another worker re-run it:
    arq's in-progress key lives the longest function timeout + 10 s and is never refreshed."""
    return settings.step_timeout_s + 10  # the settings keep callbacks within the step timeout


def health_key(settings: Settings, worker_name: str | None = None) -> str:
    """The arq health-check key of one worker (``*`` for all), refreshed while it lives."""
    return Keys(settings.queue_name).health_check(worker_name or settings.worker_name)


# A poll in one round trip: the due ids of queue ARGV[1] (score <= ARGV[2] ms, at most ARGV[5]
# read), and for each one not in progress (key ARGV[6] .. id), until ARGV[4] are started: the
# in-progress key set (PX ARGV[3]) and the request's record (key ARGV[7] .. id) read for the
# run (false for a job that is not a request's). What arq does with a ZRANGEBYSCORE, then per
# job WATCH and EXISTS on the in-progress key, ZSCORE and MULTI/PSETEX/EXEC, atomically.
# Returns (id, score, record) of each job started.
_POLL = """
local queue, now, px, free = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local started = {}
local due = redis.call('ZRANGEBYSCORE', queue, '-inf', now, 'WITHSCORES', 'LIMIT', 0, ARGV[5])
for i = 1, #due, 2 do
  if #started >= 3 * free then break end
  local id = due[i]
  local key = ARGV[6] .. id
  if redis.call('EXISTS', key) == 0 then
    redis.call('PSETEX', key, px, '1')
    started[#started + 1] = id
    started[#started + 1] = due[i + 1]
    started[#started + 1] = redis.call('GET', ARGV[7] .. id)
  end
end
return started
"""


class LocalAwareWorker(Worker):
    """arq's Worker, polling its queue in one round trip, and at once when a job is announced.

    arq leaves a job in the queue while it runs; every poll (every 50 ms here) it read the due
    ids, then for each asked Redis whether it was in progress and claimed it (four round trips
    a job, and every id of the jobs it runs itself decoded and checked again on every poll). A
    poll here is one script (:data:`_POLL`) with arq's rules (due, not in progress) that also
    reads the records of the jobs it starts: a run needs no round trip of its own to read the
    request it works on (``ctx["prefetched"]``, taken by :func:`provision`).

    Between polls a worker with room for a job listens on the queue's wake channel
    (:attr:`~service.core.keys.Keys.wake`, published by the API with every job due now), so a
    new request is picked up within a round trip, not after half a poll interval on average
    (issue 14.5), and an idle worker still sends one script per ``idle_poll_s``. Jobs that
    become due later (retries, deferrals) are found by the regular poll, as in arq."""

    _poll: AsyncScript | None = None
    _wake: PubSub | None = None
    idle_poll_s: float = IDLE_POLL_S

    async def _poll_iteration(self) -> None:
        """arq's, with the read and the start of the due jobs in one script, then the wait for
        the next poll (arq's own ``poll_delay`` is 0 here: see :meth:`_wait_for_work`)."""
        began = self.loop.time()
        await self._poll_once()
        await self._wait_for_work(began)

    async def _poll_once(self) -> None:
        count = self.queue_read_limit
        if self.burst and self.max_burst_jobs >= 0:
            left = self.max_burst_jobs - self._jobs_started()
            if left < 1:
                return
            count = min(left, count)
        if self.allow_pick_jobs and self.job_counter < self.max_jobs:
            await self._start_due(count)
        if self.allow_abort_jobs:
            await self._cancel_aborted_jobs()
        for job_id, task in list(self.tasks.items()):
            if task.done():
                del self.tasks[job_id]
                task.result()  # a crash in run_job surfaces here, as in arq
        await self.heart_beat()

    async def _wait_for_work(self, began: float) -> None:
        """Until ``idle_poll_s`` after the poll began, or sooner when a job is announced and
        this worker has room for one (at most one poll per ``WAKE_GAP_S``: a burst of POSTs
        is one poll). Without the channel (Redis lost) it only sleeps; the poll reports."""
        left = self.idle_poll_s - (self.loop.time() - began)
        if left <= 0:
            return
        if not self.allow_pick_jobs or self.job_counter >= self.max_jobs:
            await asyncio.sleep(left)
            return
        try:
            if self._wake is None:
                self._wake = self.pool.pubsub(ignore_subscribe_messages=True)
                await self._wake.subscribe(Keys(self.queue_name).wake)
            if await self._wake.get_message(timeout=left) is not None:
                for _ in range(10_000):  # the announcements already read: one poll for all
                    if await self._wake.get_message(timeout=0) is None:
                        break
        except (RedisError, OSError):
            await self._close_wake()
            await asyncio.sleep(max(0.0, self.idle_poll_s - (self.loop.time() - began)))
            return
        await asyncio.sleep(max(0.0, WAKE_GAP_S - (self.loop.time() - began)))

    async def _close_wake(self) -> None:
        wake, self._wake = self._wake, None
        if wake is not None:
            with contextlib.suppress(RedisError, OSError):  # the connection is gone already
                await wake.aclose()  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        await self._close_wake()
        await super().close()

    async def _start_due(self, count: int) -> None:
        free = self.max_jobs - self.job_counter
        if self._poll is None:
            self._poll = self.pool.register_script(_POLL)
        now_ms = int(time.time() * 1000)
        px = int(self.in_progress_timeout_s * 1000)
        args: list[str | int] = [self.queue_name, now_ms, px, free, count]
        args += [in_progress_key(""), self._records]
        picked = await self._poll(args=args)
        prefetched: dict[str, bytes] = self.ctx.setdefault("prefetched", {})
        if len(prefetched) > 10 * self.max_jobs:  # runs that never came (an expired job)
            prefetched.clear()
        for job_id_b, score, raw in zip(picked[::3], picked[1::3], picked[2::3], strict=True):
            job_id = job_id_b.decode()
            if raw is not None:
                prefetched[job_id] = raw
            await self.sem.acquire()
            self.job_counter = self.job_counter + 1
            task = self.loop.create_task(self.run_job(job_id, int(float(score))))
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job_id] = task

    @property
    def _records(self) -> str:
        return Keys(self.queue_name).record("")


def build_worker(
    settings: Settings, metrics: WorkerMetrics | None = None, **overrides: Any
) -> Worker:
    """An arq Worker for the settings (``overrides`` for tests: burst, poll_delay, ...)."""
    options: dict[str, Any] = {
        "functions": [
            func(
                provision,
                name=FUNCTION,
                max_tries=MAX_TRIES,
                timeout=settings.step_timeout_s,
                keep_result=0,
            ),
            # the notifications: one HTTP call each, bounded by the callback timeout
            *(
                func(
                    function,
                    name=name,
                    max_tries=MAX_TRIES,
                    timeout=settings.callback_timeout_s + 5,
                    keep_result=0,
                )
                for function, name in (
                    (write_back, WRITEBACK_FUNCTION),
                    (deliver_callback, CALLBACK_FUNCTION),
                    (deliver_health_callback, HEALTH_CALLBACK_FUNCTION),
                    (write_back_health, HEALTH_WRITEBACK_FUNCTION),
                )
            ),
        ],
        "redis_settings": arq_redis_settings(settings.redis_url),
        "queue_name": settings.queue_name,
        "max_jobs": settings.worker_concurrency,
        "job_timeout": settings.step_timeout_s,
        "keep_result": 0,
        "max_tries": MAX_TRIES,
        "on_startup": startup,
        "on_shutdown": shutdown,
        "ctx": {
            "settings": settings,
            "metrics": metrics or WorkerMetrics(),
            "writeback": load_writeback(settings.writeback_file),
        },
        "job_serializer": job_serializer,
        "job_deserializer": job_deserializer,
        # Cancels go through the request's own flag (docs/reliability.md), never arq's
        # Job.abort: no abort set to read on every poll.
        "allow_abort_jobs": False,
        "health_check_interval": settings.health_check_interval_s,
        "health_check_key": health_key(settings),
        "cron_jobs": [
            cron(
                reconcile,
                name="reconcile",
                second=set(range(0, 60, min(60, settings.reconcile_interval_s)))
                if settings.reconcile_interval_s < 60
                else {0},
                unique=True,
                run_at_startup=True,
                timeout=settings.step_timeout_s,
                keep_result=0,
            ),
            *watch_cron(settings),
        ],
        "handle_signals": True,
        "job_completion_wait": settings.step_timeout_s,
        # arq's loop does not wait between polls: LocalAwareWorker._wait_for_work does
        # (IDLE_POLL_S, or until a new job is announced; ``poll_delay`` overrides it).
        "poll_delay": 0,
    }
    idle_poll_s = float(overrides.pop("poll_delay", IDLE_POLL_S))
    options.update(overrides)
    worker = LocalAwareWorker(**options)
    worker.idle_poll_s = idle_poll_s
    # Runs stop at their next step boundary once arq stops picking jobs on SIGTERM/SIGINT.
    worker.ctx["stopping"] = lambda: not worker.allow_pick_jobs
    return worker


def watch_cron(settings: Settings) -> list[Any]:
    """The health watch's cron job (none when ``PROVISIONER_WATCH_ENABLED=false``): one tick
    every ``PROVISIONER_WATCH_INTERVAL_S``, run by one worker per tick."""
    if not settings.watch_enabled:
        return []
    step = settings.watch_interval_s
    return [
        cron(
            watch_tick,
            name="watch",
            second=set(range(0, 60, step)),
            unique=True,
            timeout=settings.step_timeout_s,
            keep_result=0,
        )
    ]
