"""The worker process: arq workers supervised across Redis outages, and the health check.

The worker itself (its jobs and arq settings) is :mod:`workers.worker`; the resources its jobs
share are :mod:`workers.resources`. The names below are re-exported for the command line and
the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from typing import Any

import structlog
from arq.worker import Worker

try:
    import uvloop
except ImportError:  # not built for every platform (Windows): asyncio's own loop then
    uvloop = None  # type: ignore[assignment]
from redis.exceptions import WatchError

from service.core.keys import Keys
from service.core.logs import configure_logging
from service.core.redis import redis_client
from service.core.runtime import tune_gc
from service.core.settings import Settings
from service.core.tracing import setup_tracing, shutdown_tracing
from workers.metrics import WorkerMetrics
from workers.resources import REDIS_LOST, shutdown, startup
from workers.worker import (
    MAX_TRIES,
    build_worker,
    health_key,
    provision,
    reconcile,
    recovery_bound_s,
    run_bound_s,
    watch_cron,
)

__all__ = [
    "MAX_TRIES",
    "REDIS_LOST",
    "build_worker",
    "check_health",
    "health_key",
    "lost_redis",
    "provision",
    "reconcile",
    "recovery_bound_s",
    "run_bound_s",
    "run_worker",
    "shutdown",
    "startup",
    "supervise",
    "watch_cron",
]

log = structlog.get_logger("workers.main")


#: What a lost Redis looks like to arq's main loop (BusyLoadingError while an AOF loads, and
#: ReadOnlyError from a demoted master after a failover, are ConnectionError / ResponseError).
RECONNECT_BACKOFF_S = (0.5, 5.0)  # first and longest wait between two worker builds


def lost_redis(exc: BaseException) -> bool:
    """True for a lost Redis, also as redis-py reports it mid-transaction: arq's start_jobs
    WATCHes each job's in-progress key, and a connection that dies then surfaces as a
    WatchError raised while handling the ConnectionError (not as the ConnectionError)."""
    if isinstance(exc, REDIS_LOST):
        return True
    return isinstance(exc, WatchError) and isinstance(exc.__context__, REDIS_LOST)


async def supervise(settings: Settings, metrics: WorkerMetrics | None = None) -> None:
    """Run arq workers until SIGINT/SIGTERM; rebuild one after it lost Redis.

    arq's worker ends (or hangs) when its Redis connection drops (python-arq #435, #498). Here
    the failed worker's runs are cancelled (their jobs stay queued: arq re-runs them once their
    in-progress keys expire, see :func:`recovery_bound_s`), its resources closed, and a new
    worker built after a backoff (0.5 s doubling to 5 s; arq's own connect retries add up to
    30 s per build), for as long as it takes. A signal during the wait ends the loop."""
    metrics = metrics or WorkerMetrics()
    stop = asyncio.Event()
    first, longest = RECONNECT_BACKOFF_S
    delay = first
    while not stop.is_set():
        worker = build_worker(settings, metrics)  # installs arq's signal handlers on this loop
        worker.on_stop = lambda _signum: stop.set()
        worker.main_task = asyncio.ensure_future(worker.main())
        started = time.monotonic()
        try:
            await worker.main_task
        except asyncio.CancelledError:
            stop.set()  # arq's signal handler cancelled main after the runs finished
        except Exception as e:
            if not lost_redis(e):
                raise
            log.warning("redis_lost", error=f"{type(e).__name__}: {e}", retry_in_s=delay)
            await _abandon(worker)
            if time.monotonic() - started > 60:
                delay = first  # it ran fine for a while: this is a new outage
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            delay = min(longest, delay * 2)
            continue
        with contextlib.suppress(*REDIS_LOST):
            await worker.close()
        break


async def _abandon(worker: Worker) -> None:
    """Cancel a worker's runs and close what it opened, without Redis."""
    tasks = list(worker.tasks.values())
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=5)
    for task in tasks:  # their errors are the lost connection, already logged
        if task.done() and not task.cancelled():
            task.exception()
    with contextlib.suppress(Exception):
        await shutdown(worker.ctx)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(worker.pool.close(close_connection_pool=True), timeout=2)


def run_worker(settings: Settings) -> None:
    """Run a worker until SIGINT/SIGTERM (the running steps finish first, bounded), coming
    back by itself after Redis was unreachable (see :func:`supervise`)."""
    configure_logging(settings)
    settings.require_tenant()
    setup_tracing(settings, "provisioner-worker")
    metrics = WorkerMetrics()
    stop_metrics = metrics.serve(settings.worker_metrics_port)
    log.info("worker_bounds", run_s=run_bound_s(settings), recovery_s=recovery_bound_s(settings))
    tune_gc()
    try:
        # uvloop's event loop (libuv) where it is installed: the same asyncio API at a lower
        # CPU cost per socket event, which is most of a worker's time (docs/benchmarks.md, (D))
        if uvloop is not None:
            uvloop.run(supervise(settings, metrics))
        else:
            asyncio.run(supervise(settings, metrics))
    finally:
        stop_metrics()
        shutdown_tracing()


async def check_health(
    settings: Settings, worker_name: str | None = None, *, live_only: bool = False
) -> int:
    """0 when the named worker (or, without a name, any worker on the queue) refreshed its
    health key within the last health-check interval and its token holds a permission the
    synchronization API accepts; else 1. Prints each live worker and its permission verdict.
    ``live_only`` (a liveness probe) asks only for the heartbeat: a worker whose token lacks
    permissions is alive but not ready, and restarting it would not grant them."""
    redis = redis_client(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        if worker_name:  # exact key: a name is not a glob pattern
            keys = [health_key(settings, worker_name).encode()]
        else:
            pattern = health_key(settings, "*")
            keys = sorted([k async for k in redis.scan_iter(match=pattern, count=1000)])
        ready = 0
        for key in keys:
            info = await redis.get(key)
            name = key.decode().removeprefix(Keys(settings.queue_name).health_check(""))
            print(f"{name}: {info.decode() if info else 'no heartbeat (dead or never started)'}")
            if info is not None:
                ready += live_only or await _permission_verdict(redis, settings, name)
        if not keys:
            print(f"no worker on queue {settings.queue_name!r} sent a heartbeat")
        return 0 if ready else 1
    except REDIS_LOST as e:
        print(f"redis unreachable: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        await redis.aclose()


async def _permission_verdict(redis: Any, settings: Settings, name: str) -> bool:
    """Print a live worker's permission verdict; False when its token lacks every permission
    the sync API accepts (not ready: each request would fail GraphPermissionMissing)."""
    raw = await redis.get(Keys(settings.queue_name).worker_permissions(name))
    verdict = json.loads(raw) if raw else {}
    if verdict.get("ok") is False:
        print(f"{name}: NOT READY: GraphPermissionMissing: {verdict.get('problem')}")
        return False
    if verdict.get("ok") is True:
        print(f"{name}: Graph permissions: {', '.join(verdict.get('roles') or [])}")
    return True
