"""The API's Prometheus metrics (prometheus-client), served at ``GET /metrics``.

Each app owns an :class:`ApiMetrics` with its own registry (tests do not share counts). Request
counters are updated as requests are answered; the queue gauges (depth, oldest queued request,
requests by state, callbacks pending, live workers, active throttle cool-downs, each tenant's
shared call rate) are read from Redis when scraped, so every API replica reports the same,
shared numbers. Label values stay bounded: route
templates, not raw paths. The workers expose their own metrics (workers/metrics.py).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from service.core.application_store import ApplicationStore
from service.core.health import Health
from service.core.keys import TENANT_RATE_FIELDS
from service.core.metrics import MetricSet
from service.core.models import State
from service.core.store import Store

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class ApiMetrics(MetricSet):
    """The intake API's metrics."""

    def __init__(self) -> None:
        super().__init__()
        self.http_requests = self.counter(
            "provisioner_http_requests",
            "HTTP requests answered, by method, route template and status.",
            "method",
            "route",
            "status",
        )
        self.http_duration = self.histogram(
            "provisioner_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template.",
            "route",
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.requests_accepted = self.counter(
            "provisioner_requests_accepted",
            "Provisioning requests accepted (stored and queued), by source (api, webhook:...).",
            "source",
        )
        self.requests_deduplicated = self.counter(
            "provisioner_requests_deduplicated",
            "Requests answered with an in-flight request for the same app, by source.",
            "source",
        )
        self.queue_depth = self.gauge(
            "provisioner_queue_depth",
            "Provisioning requests queued, waiting for a worker (callbacks, ticket write-backs "
            "and the reconciler's cron run not counted).",
        )
        self.callbacks_pending = self.gauge(
            "provisioner_callbacks_pending",
            "Callback and ticket write-back jobs in the arq queue, deferred retries included.",
        )
        self.oldest_queued_age = self.gauge(
            "provisioner_oldest_queued_age_seconds",
            "Age of the oldest request still in state queued (0 when none).",
        )
        self.requests_in_state = self.gauge(
            "provisioner_requests_in_state", "Requests currently queued or running.", "state"
        )
        self.workers_alive = self.gauge(
            "provisioner_workers_alive", "Workers whose health key is fresh."
        )
        self.throttle_cooldowns = self.gauge(
            "provisioner_throttle_cooldowns_active",
            "Tenants whose tenant-wide throttle cool-down is running.",
        )
        self.tenant_rate = self.gauge(
            "provisioner_tenant_rate",
            "Calls/s the workers pace a tenant's Graph calls at, as of its last call (the "
            "adaptive rate, under any configured ceiling).",
            "tenant",
        )
        self.tenant_limit = self.gauge(
            "provisioner_tenant_limit_estimate",
            "Calls/s a tenant's limit is, as Graph's x-ms-throttle-limit-percentage reports "
            "imply it (no series while none is known).",
            "tenant",
        )
        self.applications = self.gauge(
            "provisioner_applications",
            "Watched applications with a job in each health (an application with jobs in two "
            "healths counts in both).",
            "health",
        )
        self.watched_jobs = self.gauge("provisioner_watched_jobs", "Jobs under the health watch.")
        self.watch_overdue = self.gauge(
            "provisioner_watch_overdue_seconds",
            "How late the most overdue health-watch check is (0 when none is due).",
        )
        # (method, route, status) -> its counter and the route's histogram, both in one
        # lookup on every request (MetricSet.child keeps one child per lookup).
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count and time one answered request (the request middleware calls this)."""
        method = method if method in _METHODS else "OTHER"
        children = self._request_children.get((method, route, status))
        if children is None:
            counter = self.http_requests.labels(method=method, route=route, status=str(status))
            children = (counter, self.http_duration.labels(route=route))
            self._request_children[(method, route, status)] = children
        children[0].inc()
        children[1].observe(seconds)

    def count_intake(self, source: str, *, created: bool) -> None:
        """Count one request accepted (``created``) or answered with its in-flight twin."""
        counter = self.requests_accepted if created else self.requests_deduplicated
        self.child(counter, source).inc()

    async def refresh(self, store: Store) -> None:
        """Read the shared queue numbers from Redis (called on each scrape)."""
        counters = await queue_counters(store)
        self.queue_depth.set(counters.queue_depth)
        self.callbacks_pending.set(counters.callbacks_pending)
        self.requests_in_state.labels(state=State.QUEUED.value).set(counters.queued)
        self.requests_in_state.labels(state=State.RUNNING.value).set(counters.running)
        self.oldest_queued_age.set(counters.oldest_queued_age_s)
        self.workers_alive.set(counters.workers_alive)
        self.throttle_cooldowns.set(counters.throttle_cooldowns)
        self.tenant_rate.clear()
        self.tenant_limit.clear()
        for rate in await tenant_rates(store):
            self.tenant_rate.labels(tenant=rate.tenant).set(rate.rate)
            if rate.limit is not None:
                self.tenant_limit.labels(tenant=rate.tenant).set(rate.limit)
        watch = await ApplicationStore.of(store).counts()
        for health in Health:
            self.applications.labels(health=health.value).set(watch.by_health[health])
        self.watched_jobs.set(watch.watched_jobs)
        self.watch_overdue.set(watch.overdue_s)


@dataclass(frozen=True, slots=True)
class QueueCounters:
    """The shared queue numbers, as read from Redis (``/metrics`` and the status page)."""

    #: Provisioning requests in state ``queued`` (the ``{p}:state:queued`` index).
    queue_depth: int
    queued: int
    running: int
    oldest_queued_age_s: float
    workers_alive: int
    throttle_cooldowns: int
    #: Callback and write-back jobs in arq's queue (due now or deferred).
    callbacks_pending: int = 0
    #: ``(tenant, seconds left)`` of each active cool-down, the longest first.
    cooldowns: tuple[tuple[str, float], ...] = ()


async def queue_counters(store: Store) -> QueueCounters:
    """Queue depth (provisioning requests queued: arq's other jobs, the deferred callbacks and
    the reconciler's next cron run, are not provisioning work), requests running, the age of the
    oldest queued one, callbacks pending, fresh worker health keys and tenant cool-downs."""
    redis, keys = store.redis, store.keys
    queued_key = keys.by_state(State.QUEUED.value)
    oldest = await redis.zrange(queued_key, 0, 0, withscores=True)
    age = time.time() - oldest[0][1] / 1000 if oldest else 0.0
    cooldowns = await throttle_cooldowns(store)
    queued = await redis.zcard(queued_key)
    return QueueCounters(
        queue_depth=queued,
        queued=queued,
        callbacks_pending=await callbacks_pending(store),
        running=await redis.zcard(keys.by_state(State.RUNNING.value)),
        oldest_queued_age_s=max(0.0, age),
        workers_alive=await _count(store, keys.health_check("*")),
        throttle_cooldowns=len(cooldowns),
        cooldowns=cooldowns,
    )


#: Job ids of the notification jobs (:func:`service.core.queue.notification_jobs`) start so.
NOTIFICATION_JOB_PREFIXES = ("callback:", "writeback:")


async def callbacks_pending(store: Store) -> int:
    """Callback and ticket write-back jobs in arq's queue (one ``ZSCAN`` pass over it)."""
    count = 0
    async for member, _score in store.redis.zscan_iter(store.keys.queue, count=1000):
        count += _text(member).startswith(NOTIFICATION_JOB_PREFIXES)
    return count


async def throttle_cooldowns(store: Store) -> tuple[tuple[str, float], ...]:
    """``(tenant, seconds left)`` of every tenant cool-down the workers honour now (a key with a
    positive TTL, as ``workers.workflow.throttle.Throttle`` reads it), the longest first."""
    ttls = await _each_tenant(store, store.keys.cooldown("*"), lambda pipe, key: pipe.pttl(key))
    found = [(tenant, int(ms) / 1000) for tenant, ms in ttls if int(ms) > 0]
    return tuple(sorted(found, key=lambda item: (-item[1], item[0])))


@dataclass(frozen=True, slots=True)
class TenantRate:
    """A tenant's shared pacing state, as the workers' throttle last wrote it."""

    tenant: str
    rate: float  # calls/s in force
    limit: float | None  # the limit Graph's usage reports imply (None: not known)


async def tenant_rates(store: Store) -> tuple[TenantRate, ...]:
    """The adaptive rate of every tenant the workers pace now (its state hash, kept until
    ``AdaptiveRate.idle_ttl_s`` after the tenant's last call), by tenant. A tenant paced at a
    fixed configured rate (the adaptive rate off) keeps no rate in the hash and is left out."""
    states = await _each_tenant(
        store,
        store.keys.tenant_bucket("*"),
        lambda pipe, key: pipe.hmget(key, list(TENANT_RATE_FIELDS)),
    )
    found = [
        TenantRate(tenant, float(cur), float(lim) if lim else None)
        for tenant, (cur, lim) in states
        if cur
    ]
    return tuple(sorted(found, key=lambda r: r.tenant))


async def _each_tenant(
    store: Store, pattern: str, ask: Callable[[Pipeline, str], object]
) -> list[tuple[str, Any]]:
    """``(tenant, answer)`` for every key matching ``pattern`` (a per-tenant key built with
    ``"*"`` for the tenant): one ``SCAN`` pass, then ``ask``'s command for each key in one
    pipeline."""
    prefix = pattern.removesuffix("*")
    keys = [key async for key in store.redis.scan_iter(match=pattern, count=500)]
    if not keys:
        return []
    async with store.redis.pipeline(transaction=False) as pipe:
        for key in keys:
            ask(pipe, key)
        answers = await pipe.execute()
    return [(_text(key).removeprefix(prefix), a) for key, a in zip(keys, answers, strict=True)]


def _text(key: bytes | str) -> str:
    return key.decode(errors="replace") if isinstance(key, bytes) else key


async def _count(store: Store, pattern: str) -> int:
    return len([key async for key in store.redis.scan_iter(match=pattern, count=500)])


async def metrics_response(metrics: ApiMetrics, store: Store) -> web.Response:
    """The ``/metrics`` answer (the queue gauges are left as they were if Redis is down)."""
    with contextlib.suppress(RedisError, OSError):
        await metrics.refresh(store)
    return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})
