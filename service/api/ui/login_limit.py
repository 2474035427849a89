"""The sign-in limit of the status page: ``PROVISIONER_UI_LOGIN_RATE_LIMIT`` attempts per client
address per ``PROVISIONER_UI_LOGIN_RATE_WINDOW_S`` seconds, counted in Redis (so it holds across
API replicas), then ``429`` with ``Retry-After`` until the window ends.

A fixed window: the first attempt creates ``{p}:ui-login:{address}`` with the window as its TTL,
every attempt (good key or bad) increments it, in one ``MULTI``. The address is the peer aiohttp
sees (``request.remote``): behind a reverse proxy every client shares the proxy's address.
"""

from __future__ import annotations

import math

import structlog
from aiohttp import web

from service.api.problems import Problem
from service.api.state import REDIS, SETTINGS, STORE
from service.core.redis import guarded

__all__ = ["LoginLimited", "take_login_attempt"]

log = structlog.get_logger(__name__)


class LoginLimited(Problem):
    """Too many sign-in attempts from one address."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            429,
            "Too Many Requests",
            f"Too many sign-in attempts from this address; try again in {retry_after_s} s.",
            slug="ui-login-rate-limited",
            headers={"Retry-After": str(retry_after_s)},
        )


async def take_login_attempt(request: web.Request) -> None:
    """Count one sign-in attempt of the request's client; raise :class:`LoginLimited` past the
    limit (a limit of 0 is off)."""
    settings = request.app[SETTINGS]
    if settings.ui_login_rate_limit <= 0:
        return
    address = request.remote or "unknown"
    key = request.app[STORE].keys.ui_login_attempts(address)
    window_ms = max(1, int(settings.ui_login_rate_window_s * 1000))

    async def count() -> tuple[int, int]:
        async with request.app[REDIS].pipeline(transaction=True) as pipe:
            pipe.set(key, 0, px=window_ms, nx=True)
            pipe.incr(key)
            pipe.pttl(key)
            _, attempts, ttl_ms = await pipe.execute()
        return int(attempts), int(ttl_ms)

    attempts, ttl_ms = await guarded(count)
    if attempts > settings.ui_login_rate_limit:
        log.warning("ui_login_rate_limited", attempts=attempts)
        raise LoginLimited(max(1, math.ceil(max(ttl_ms, 0) / 1000)))
