"""The arq worker: its job functions (``provision``, the notifications, the crons) and its
settings, built by :func:`build_worker`.

Jobs are JSON. Our own budgets decide when a request gives up, so ``max_tries`` is set out of
the way, and each run is bounded below arq's job timeout so a slow run is re-queued instead of
failed by arq. The resources the jobs share are in :mod:`workers.resources`.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import structlog
from arq import Retry
from arq.cron import cron
from arq.worker import Worker, func

from service.core.application_store import HEALTH_CALLBACK_FUNCTION, HEALTH_WRITEBACK_FUNCTION
from service.core.errors import StoreUnavailable
from service.core.keys import Keys
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


async def provision(ctx: dict[str, Any], request_id: str) -> None:
    """arq job: run or resume one request's workflow."""
    deps: Deps = ctx["deps"]
    job_try = int(ctx.get("job_try", 1))
    bound = run_bound_s(deps.settings)
    deps.metrics.in_flight.inc()
    try:
        await asyncio.wait_for(run_request(deps, request_id, job_try), timeout=bound)
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


class LocalAwareWorker(Worker):
    """arq's Worker, minus the re-checks of jobs it is running itself.

    arq leaves a job in the queue while it runs, and every poll (every 50 ms here) reads the
    due ids and, for each, asks Redis whether it is in progress (WATCH, EXISTS, ZSCORE: three
    round trips). With hundreds of workflows in flight that was most of the worker's Redis
    traffic (docs/benchmarks.md, (D)); a job this worker runs is known to be in progress
    without asking."""

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """arq's, for the ids this worker is not running itself."""
        running = {job_id for job_id, task in self.tasks.items() if not task.done()}
        await super().start_jobs([i for i in job_ids if i.decode() not in running])


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
        "allow_abort_jobs": True,
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
        # arq polls the queue (no blocking pop): a new request waits half of this on average
        # before a worker picks it up (issue 14.5); an idle poll is one ZRANGEBYSCORE.
        "poll_delay": 0.05,
    }
    options.update(overrides)
    worker = LocalAwareWorker(**options)
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
