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

import structlog
from arq import Retry
from arq.connections import RedisSettings
from arq.worker import Worker, func

from service.config import Settings
from service.crypto import CredentialCipher
from service.errors import StoreUnavailable
from service.logs import configure_logging
from service.queue import FUNCTION, job_deserializer, job_serializer
from service.store import Store
from workers.calls import Defer
from workers.graph import GraphClient, close_quietly, new_session
from workers.throttle import Throttle
from workers.token import TokenProvider
from workers.workflow import Deps, run_request

log = structlog.get_logger("workers.main")
MAX_TRIES = 1_000_000  # never the reason a request fails: its retry budget is


async def provision(ctx: dict[str, Any], request_id: str) -> None:
    """arq job: run or resume one request's workflow."""
    deps: Deps = ctx["deps"]
    job_try = int(ctx.get("job_try", 1))
    bound = max(1.0, deps.settings.step_timeout_s - 5)
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
        structlog.contextvars.clear_contextvars()


async def startup(ctx: dict[str, Any]) -> None:
    """Build the worker's resources once."""
    settings: Settings = ctx["settings"]
    tokens = await TokenProvider.create(settings)
    session = new_session(settings)
    cipher = CredentialCipher(settings.encryption_keys) if settings.encryption_keys else None
    store = Store(
        ctx["redis"],
        queue_name=settings.queue_name,
        record_ttl_s=settings.record_ttl_s,
        cipher=cipher,
    )
    ctx["session"] = session
    ctx["tokens"] = tokens
    ctx["deps"] = Deps(
        settings=settings,
        store=store,
        graph=GraphClient(session, settings.graph_url, tokens),
        throttle=Throttle(ctx["redis"], settings.queue_name, settings.tenant_id or "default"),
    )
    log.info("worker_started", queue=settings.queue_name, concurrency=settings.worker_concurrency)


async def shutdown(ctx: dict[str, Any]) -> None:
    """Close what :func:`startup` opened."""
    session = ctx.get("session")
    if session is not None:
        await close_quietly(session)


def build_worker(settings: Settings, **overrides: Any) -> Worker:
    """An arq Worker for the settings (``overrides`` for tests: burst, poll_delay, ...)."""
    options: dict[str, Any] = {
        "functions": [
            func(
                provision,
                name=FUNCTION,
                max_tries=MAX_TRIES,
                timeout=settings.step_timeout_s,
                keep_result=0,
            )
        ],
        "redis_settings": RedisSettings.from_dsn(settings.redis_url),
        "queue_name": settings.queue_name,
        "max_jobs": settings.worker_concurrency,
        "job_timeout": settings.step_timeout_s,
        "keep_result": 0,
        "max_tries": MAX_TRIES,
        "on_startup": startup,
        "on_shutdown": shutdown,
        "ctx": {"settings": settings},
        "job_serializer": job_serializer,
        "job_deserializer": job_deserializer,
        "allow_abort_jobs": True,
        "health_check_interval": 10,
        "handle_signals": True,
        "job_completion_wait": settings.step_timeout_s,
        "poll_delay": 0.2,
    }
    options.update(overrides)
    return Worker(**options)


def run_worker(settings: Settings) -> None:
    """Run a worker until SIGINT/SIGTERM (the running steps finish first, bounded)."""
    configure_logging(settings)
    settings.require_tenant()
    worker = build_worker(settings)
    worker.run()


async def check_health(settings: Settings) -> int:
    """0 when a worker on the queue refreshed its health key in the last interval, else 1."""
    from arq.worker import async_check_health

    result: int = await async_check_health(
        RedisSettings.from_dsn(settings.redis_url), None, settings.queue_name
    )
    return result
