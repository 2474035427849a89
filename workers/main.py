"""The arq worker: its settings, resources and the one job function, ``provision``.

Resources mirror the API's ``cleanup_ctx``: ``on_startup`` builds the token provider (msal), the
Graph session and the store once per process; ``on_shutdown`` closes them. Jobs are JSON. Our
own budgets decide when a request gives up, so ``max_tries`` is set out of the way, and each
run is bounded below arq's job timeout so a slow run is re-queued instead of failed by arq.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import aiohttp
import structlog
from arq import Retry
from arq.cron import cron
from arq.worker import Worker, func

from service.config import Settings
from service.crypto import CredentialCipher
from service.errors import StoreUnavailable
from service.logs import configure_logging
from service.queue import CALLBACK_FUNCTION, FUNCTION, job_deserializer, job_serializer
from service.redis_conn import arq_redis_settings, redis_client
from service.store import Store
from service.tracing import setup_tracing, shutdown_tracing
from workers.callbacks import deliver_callback
from workers.calls import Defer
from workers.graph import GraphClient, close_quietly, new_session
from workers.metrics import WorkerMetrics
from workers.reconcile import reconcile_once
from workers.throttle import Throttle
from workers.tls import ssl_context
from workers.token import TokenProvider
from workers.workflow import Deps, run_request

log = structlog.get_logger("workers.main")
MAX_TRIES = 1_000_000  # never the reason a request fails: its retry budget is


async def provision(ctx: dict[str, Any], request_id: str) -> None:
    """arq job: run or resume one request's workflow."""
    deps: Deps = ctx["deps"]
    job_try = int(ctx.get("job_try", 1))
    bound = max(1.0, deps.settings.step_timeout_s - 5)
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
    )
    ctx["session"] = session
    ctx["callback_session"] = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=ssl_context(settings.ca_bundle)), trust_env=True
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
        ),
        stopping=ctx.get("stopping", lambda: False),
        metrics=metrics,
    )
    log.info("worker_started", queue=settings.queue_name, concurrency=settings.worker_concurrency)


async def shutdown(ctx: dict[str, Any]) -> None:
    """Close what :func:`startup` opened."""
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


def health_key(settings: Settings, worker_name: str | None = None) -> str:
    """The arq health-check key of one worker (``*`` for all), refreshed while it lives."""
    return f"{settings.queue_name}:health-check:{worker_name or settings.worker_name}"


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
                deliver_callback,
                name=CALLBACK_FUNCTION,
                max_tries=MAX_TRIES,
                timeout=settings.callback_timeout_s + 5,
                keep_result=0,
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
        "ctx": {"settings": settings, "metrics": metrics or WorkerMetrics()},
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
            )
        ],
        "handle_signals": True,
        "job_completion_wait": settings.step_timeout_s,
        "poll_delay": 0.2,
    }
    options.update(overrides)
    worker = Worker(**options)
    # Runs stop at their next step boundary once arq stops picking jobs on SIGTERM/SIGINT.
    worker.ctx["stopping"] = lambda: not worker.allow_pick_jobs
    return worker


def run_worker(settings: Settings) -> None:
    """Run a worker until SIGINT/SIGTERM (the running steps finish first, bounded)."""
    configure_logging(settings)
    settings.require_tenant()
    setup_tracing(settings, "provisioner-worker")
    metrics = WorkerMetrics()
    metrics.serve(settings.worker_metrics_port)
    worker = build_worker(settings, metrics)
    try:
        worker.run()
    finally:
        shutdown_tracing()


async def check_health(settings: Settings, worker_name: str | None = None) -> int:
    """0 when the named worker (or, without a name, any worker on the queue) refreshed its
    health key within the last health-check interval; else 1. Prints each live worker."""
    redis = redis_client(settings.redis_url)
    try:
        pattern = health_key(settings, worker_name or "*")
        keys = [k async for k in redis.scan_iter(match=pattern, count=1000)]
        for key in sorted(keys):
            info = await redis.get(key)
            name = key.decode().rsplit(":", 1)[-1]
            print(f"{name}: {info.decode() if info else 'gone'}")
        return 0 if keys else 1
    finally:
        await redis.aclose()
