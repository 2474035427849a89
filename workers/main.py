"""The arq worker: its settings, resources and the one job function, ``provision``.

Resources mirror the API's ``cleanup_ctx``: ``on_startup`` builds the token provider (msal), the
Graph session and the store once per process; ``on_shutdown`` closes them. Jobs are JSON. Our
own budgets decide when a request gives up, so ``max_tries`` is set out of the way, and each
run is bounded below arq's job timeout so a slow run is re-queued instead of failed by arq.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import sys
import time
from typing import Any

import aiohttp
import structlog
from arq import Retry
from arq.cron import cron
from arq.worker import Worker, func
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.core.application_store import (
    HEALTH_CALLBACK_FUNCTION,
    HEALTH_WRITEBACK_FUNCTION,
)
from service.core.crypto import CredentialCipher
from service.core.errors import StoreUnavailable, TokenError
from service.core.keys import Keys
from service.core.logs import configure_logging
from service.core.queue import (
    CALLBACK_FUNCTION,
    FUNCTION,
    WRITEBACK_FUNCTION,
    job_deserializer,
    job_serializer,
)
from service.core.redis import arq_redis_settings, redis_client
from service.core.settings import Settings
from service.core.ssrf import CallbackAllowlist, SafeResolver
from service.core.store import Store
from service.core.tracing import setup_tracing, shutdown_tracing
from workers.graph.client import GraphClient, close_quietly, new_session
from workers.graph.permissions import SYNCHRONIZATION, token_lacks
from workers.graph.tls import ssl_context
from workers.graph.token import TokenProvider
from workers.metrics import WorkerMetrics
from workers.notify.callbacks import deliver_callback
from workers.notify.writeback import load_writeback, write_back
from workers.reconcile import reconcile_once
from workers.watch import watch_tick
from workers.watch.notify import deliver_health_callback, write_back_health
from workers.workflow.calls import Defer
from workers.workflow.run import Deps, run_request
from workers.workflow.throttle import AdaptiveRate, Throttle

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


async def startup(ctx: dict[str, Any]) -> None:
    """Build the worker's resources once."""
    settings: Settings = ctx["settings"]
    metrics: WorkerMetrics = ctx["metrics"]
    tokens = await TokenProvider.create(settings)
    tokens.on_acquire = metrics.token_acquired
    session = new_session(settings)
    cipher = CredentialCipher(settings.encryption_keys) if settings.encryption_keys else None
    store = Store(
        ctx["redis"],
        queue_name=settings.queue_name,
        record_ttl_s=settings.record_ttl_s,
        cipher=cipher,
        retention_s=settings.record_retention_s,
    )
    ctx["session"] = session
    ctx["callback_session"] = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(
            ssl=ssl_context(settings.ca_bundle),
            # SSRF: refuse internal addresses at connect time too (DNS rebinding).
            resolver=SafeResolver(CallbackAllowlist(settings.callback_allowlist)),
        ),
        trust_env=True,
    )
    ctx["tokens"] = tokens
    ctx["deps"] = Deps(
        settings=settings,
        store=store,
        graph=GraphClient(session, settings.graph_url, tokens, observe=metrics.graph_call),
        throttle=Throttle(
            ctx["redis"],
            settings.queue_name,
            settings.tenant_id or "default",
            rate_per_s=settings.tenant_rate_limit,
            burst=settings.tenant_rate_burst,
            coordinate=settings.throttle_coordination,
            adaptive=AdaptiveRate(
                start=settings.tenant_rate_start,
                target_usage=settings.tenant_rate_target_usage,
            )
            if settings.tenant_rate_adaptive
            else None,
        ),
        stopping=ctx.get("stopping", lambda: False),
        metrics=metrics,
    )
    log.info("worker_started", queue=settings.queue_name, concurrency=settings.worker_concurrency)
    await report_permissions(ctx["redis"], settings, tokens)
    probe_file = os.environ.get(LAG_PROBE_ENV)
    if probe_file:
        ctx["lag_probe"] = asyncio.create_task(_probe_loop_lag(probe_file))


async def report_permissions(redis: Any, settings: Settings, tokens: TokenProvider) -> None:
    """Read the roles of the worker's own access token at start-up: warn when they hold none
    of the permissions the synchronization API accepts, and record the verdict for
    ``provisioner worker --check``. Entra unreachable: nothing is known yet, nothing fails."""
    try:
        roles = await tokens.roles()
    except TokenError as e:
        log.warning("graph_token_unavailable", error=e.error, detail=e.description)
        verdict: dict[str, Any] = {"ok": None, "problem": f"no token yet: {e.error}"}
    else:
        problem = token_lacks(roles)
        verdict = {
            "ok": problem is None,
            "roles": list(roles) if roles is not None else None,
            "problem": problem.message if problem else None,
        }
        if problem is not None:
            log.warning(
                "graph_permission_missing",
                needed=list(SYNCHRONIZATION),
                token_roles=list(roles or ()),
                detail=problem.message,
            )
            await tokens.refresh()  # a grant made meanwhile shows in the next token
    key = Keys(settings.queue_name).worker_permissions(settings.worker_name)
    with contextlib.suppress(*REDIS_LOST):
        await redis.set(key, json.dumps(verdict), ex=7 * 86400)


#: Benchmarks only (benchmarks/worker_cost.py): a file to which the worker appends, every second,
#: how late a 50 ms ``asyncio.sleep`` woke up (event-loop lag, ms), one JSON list a line.
LAG_PROBE_ENV = "PROVISIONER_BENCH_LOOP_LAG_FILE"


async def _probe_loop_lag(path: str, interval_s: float = 0.05) -> None:
    loop = asyncio.get_running_loop()
    samples: list[float] = []
    flushed = loop.time()
    while True:
        before = loop.time()
        await asyncio.sleep(interval_s)
        now = loop.time()
        samples.append(round((now - before - interval_s) * 1000, 2))
        if now - flushed >= 1.0:
            with open(path, "a") as f:  # noqa: ASYNC230 - a few bytes a second, benchmarks only
                f.write(json.dumps(samples) + "\n")
            samples, flushed = [], now


async def shutdown(ctx: dict[str, Any]) -> None:
    """Close what :func:`startup` opened."""
    probe = ctx.pop("lag_probe", None)
    if probe is not None:
        probe.cancel()
    for name in ("session", "callback_session"):
        session = ctx.get(name)
        if session is not None:
            await close_quietly(session)


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
            func(
                write_back,
                name=WRITEBACK_FUNCTION,
                max_tries=MAX_TRIES,
                timeout=settings.callback_timeout_s + 5,
                keep_result=0,
            ),
            func(
                deliver_callback,
                name=CALLBACK_FUNCTION,
                max_tries=MAX_TRIES,
                timeout=settings.callback_timeout_s + 5,
                keep_result=0,
            ),
            *(
                func(
                    function,
                    name=name,
                    max_tries=MAX_TRIES,
                    timeout=settings.callback_timeout_s + 5,
                    keep_result=0,
                )
                for function, name in (
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
    worker = Worker(**options)
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


#: What a lost Redis looks like to arq's main loop (BusyLoadingError while an AOF loads, and
#: ReadOnlyError from a demoted master after a failover, are ConnectionError / ResponseError).
REDIS_LOST = (RedisConnectionError, RedisTimeoutError, ReadOnlyError, OSError, TimeoutError)
RECONNECT_BACKOFF_S = (0.5, 5.0)  # first and longest wait between two worker builds


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
        except REDIS_LOST as e:
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
    metrics.serve(settings.worker_metrics_port)
    log.info("worker_bounds", run_s=run_bound_s(settings), recovery_s=recovery_bound_s(settings))
    try:
        asyncio.run(supervise(settings, metrics))
    finally:
        shutdown_tracing()


async def check_health(settings: Settings, worker_name: str | None = None) -> int:
    """0 when the named worker (or, without a name, any worker on the queue) refreshed its
    health key within the last health-check interval and its token holds a permission the
    synchronization API accepts; else 1. Prints each live worker and its permission verdict."""
    redis = redis_client(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        if worker_name:  # exact key: a name is not a glob pattern
            keys = [health_key(settings, worker_name).encode()]
        else:
            pattern = health_key(settings, "*")
            keys = sorted([k async for k in redis.scan_iter(match=pattern, count=1000)])
        alive = ready = 0
        for key in keys:
            info = await redis.get(key)
            name = key.decode().removeprefix(Keys(settings.queue_name).health_check(""))
            print(f"{name}: {info.decode() if info else 'no heartbeat (dead or never started)'}")
            alive += info is not None
            if info is not None:
                ok = await _permission_verdict(redis, settings, name)
                ready += ok
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
