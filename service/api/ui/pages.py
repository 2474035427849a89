"""What every signed-in page of the status page shares: the read check, the live counters and
the context the base layout needs, and a parameter problem shown as notices on the page.

Access goes through :mod:`service.api.access`, the API's own checks: ``/ui`` shows exactly
what ``GET /v1/...`` would answer the same caller.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from service.api.access import is_operator, require
from service.api.auth.keys import CALLER
from service.api.auth.policy import Permission
from service.api.metrics import queue_counters
from service.api.problems import Problem
from service.api.state import STORE
from service.core.application_store import ApplicationStore
from service.core.redis import guarded

__all__ = ["COUNTERS_REFRESH_S", "counters", "notices", "reader", "signed_in"]

COUNTERS_REFRESH_S = 5


def reader(request: web.Request) -> str:
    """The caller, when it may read; else a 403 (rendered as a page by the middleware)."""
    require(request, Permission.READ)
    caller: str = request[CALLER]
    return caller


def notices(problem: Problem) -> list[str]:
    """A parameter problem (422 with ``errors``, or a 403) as lines for the page's notices."""
    if not problem.errors:
        return [problem.detail]
    return [f"{e['field']}: {e['reason']}" for e in problem.errors]


async def counters(request: web.Request) -> dict[str, Any]:
    """The live counters: queue numbers as on ``/metrics``, and applications by health (every
    application of the deployment, as ``provisioner_applications`` counts them)."""
    store = request.app[STORE]
    queue = await guarded(lambda: queue_counters(store))
    watch = await guarded(ApplicationStore.of(store).counts)
    return {
        "queueDepth": queue.queue_depth,
        "inFlight": queue.running,
        "callbacksPending": queue.callbacks_pending,
        "throttleCooldowns": queue.throttle_cooldowns,
        "workersAlive": queue.workers_alive,
        "cooldowns": [
            {"tenant": tenant, "remainingS": round(seconds, 1)}
            for tenant, seconds in queue.cooldowns
        ],
        "applications": {h.value: n for h, n in watch.by_health.items()},
    }


async def signed_in(
    request: web.Request, caller: str, title: str, tab: str, **context: Any
) -> dict[str, Any]:
    """The context every signed-in page gets: caller, operator or not, counters, active tab."""
    return {
        "title": title,
        "caller": caller,
        "operator": is_operator(request),
        "tab": tab,
        "counters": await counters(request),
        "counters_refresh_s": COUNTERS_REFRESH_S,
        **context,
    }
