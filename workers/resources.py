"""The worker's resources, built once per process by arq's ``on_startup`` and closed by its
``on_shutdown`` (they mirror the API's ``cleanup_ctx``): the token provider (msal), the Graph
session, the callback session (SSRF-safe resolver), the store and the tenant throttle, handed
to jobs as ``ctx["deps"]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from typing import Any

import aiohttp
import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.core.crypto import CredentialCipher
from service.core.errors import TokenError
from service.core.keys import Keys
from service.core.settings import Settings
from service.core.ssrf import CallbackAllowlist, SafeResolver
from service.core.store import Store
from workers.graph.client import GraphClient
from workers.graph.permissions import SYNCHRONIZATION, token_lacks
from workers.graph.tls import close_quietly, new_session, ssl_context
from workers.graph.token import TokenProvider
from workers.metrics import WorkerMetrics
from workers.workflow.run import Deps
from workers.workflow.throttle import AdaptiveRate, Throttle

log = structlog.get_logger("workers.main")
#: What a lost or read-only Redis raises (the worker waits for it to come back).
REDIS_LOST = (RedisConnectionError, RedisTimeoutError, ReadOnlyError, OSError, TimeoutError)


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
