"""The intake API application: middlewares, resources and routes.

State lives under :class:`web.AppKey`s (:data:`SETTINGS`, :data:`REDIS`, :data:`STORE`,
:data:`METRICS`, the access policy, the intake limits, the webhook sources); the Redis client and
the store are made by one ``cleanup_ctx`` at start-up and closed at shutdown. Middlewares,
outermost first: request id + one log line + metrics + problem+json errors (one frame), the
status page's HTML errors (``/ui`` only, :mod:`service.api.ui`), authentication (API keys, then
Entra ID tokens when ``PROVISIONER_ENTRA_AUDIENCE`` is set, then the status page's session cookie).
With ``PROVISIONER_API_KEYS_FILE`` set, SIGHUP re-reads the keys file.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable

import structlog
from aiohttp import web
from redis.asyncio import Redis

from service.api.applications import routes as application_routes
from service.api.auth.entra import EntraAuthenticator, JwksCache, tls_context
from service.api.auth.keys import ApiKeyAuthenticator, ApiKeyRing, Authenticator, auth_middleware
from service.api.auth.policy import AccessPolicy, load_access_policy
from service.api.metrics import ApiMetrics
from service.api.middleware import request_middleware
from service.api.problems import problem_answer
from service.api.ratelimit import IntakeLimits
from service.api.routes import routes
from service.api.server import serve
from service.api.startup import warn_unsigned_callbacks
from service.api.state import (
    ALLOWLIST,
    AUTHENTICATORS,
    LIMITS,
    METRICS,
    POLICY,
    REDIS,
    SETTINGS,
    STORE,
    WEBHOOKS,
)
from service.api.ui.errors import ui_middleware
from service.api.ui.routes import setup_ui
from service.api.ui.session import SessionAuthenticator
from service.api.webhooks.handler import routes as webhook_routes
from service.api.webhooks.sources import load_webhook_sources
from service.core import redis as redis_conn
from service.core.crypto import CredentialCipher
from service.core.files import configured
from service.core.logs import configure_logging
from service.core.runtime import tune_gc
from service.core.settings import Settings
from service.core.ssrf import CallbackAllowlist
from service.core.store import Store
from service.core.tracing import setup_tracing

__all__ = ["METRICS", "REDIS", "SETTINGS", "STORE", "create_app", "redis_client", "run_api"]

#: Redis calls fail within this many seconds when the server is gone, so the API answers 503
#: quickly instead of hanging.
REDIS_TIMEOUT_S = 2.0
#: Idle pooled connections are PINGed before reuse after this many seconds.
REDIS_HEALTH_CHECK_S = 15

log = structlog.get_logger(__name__)


def redis_client(settings: Settings) -> Redis:
    """A Redis client with short timeouts (the API prefers a fast 503 to a hung request)."""
    return redis_conn.redis_client(
        settings.redis_url,
        socket_timeout=REDIS_TIMEOUT_S,
        socket_connect_timeout=REDIS_TIMEOUT_S,
        health_check_interval=REDIS_HEALTH_CHECK_S,
    )


def _store_context(
    cipher: CredentialCipher | None,
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def redis_and_store(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        client = redis_client(settings)
        app[REDIS] = client
        app[STORE] = Store(
            client,
            queue_name=settings.queue_name,
            record_ttl_s=settings.record_ttl_s,
            cipher=cipher,
            retention_s=settings.record_retention_s,
        )
        app[LIMITS] = IntakeLimits(
            client,
            prefix=settings.queue_name,
            rate_limit=settings.intake_rate_limit,
            window_s=settings.intake_rate_window_s,
            max_queue_depth=settings.max_queue_depth,
        )
        try:
            yield
        finally:
            await client.aclose()

    return redis_and_store


def _sighup_context(ring: ApiKeyRing) -> Callable[[web.Application], AsyncIterator[None]]:
    """SIGHUP re-reads the API keys file (only where signals can be handled: the main thread)."""

    async def sighup(app: web.Application) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        installed = False
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, ring.reload)
            installed = True
        try:
            yield
        finally:
            if installed:
                loop.remove_signal_handler(signal.SIGHUP)

    return sighup


def build_authenticators(
    settings: Settings, policy: AccessPolicy, ring: ApiKeyRing
) -> tuple[Authenticator, ...]:
    """API keys first (cheap), then Entra ID tokens when an audience is configured."""
    chain: list[Authenticator] = [ApiKeyAuthenticator(ring)]
    if settings.entra_audience:
        cache = JwksCache(
            settings.entra_discovery_url,
            ssl_context=tls_context(settings.ca_bundle),
            min_refresh_s=settings.jwks_refresh_s,
        )
        chain.append(
            EntraAuthenticator(
                cache,
                tenant_id=str(settings.entra_tenant_id or settings.tenant_id),
                audience=settings.entra_audience,
                leeway_s=settings.entra_leeway_s,
                policy=policy,
            )
        )
    return tuple(chain)


def create_app(settings: Settings) -> web.Application:
    """Build the API; a bad encryption key, policy or webhooks file raises :class:`ConfigError`
    here, before serving."""
    cipher = CredentialCipher(settings.encryption_keys) if settings.encryption_keys else None
    policy = configured(
        "PROVISIONER_ACCESS_POLICY_FILE", lambda: load_access_policy(settings.access_policy_file)
    )
    sources = configured(
        "PROVISIONER_WEBHOOKS_FILE", lambda: load_webhook_sources(settings.webhooks_file)
    )
    ring = configured(
        "PROVISIONER_API_KEYS_FILE",
        lambda: ApiKeyRing(
            settings.api_keys, settings.api_keys_file, check_every_s=settings.api_keys_reload_s
        ),
    )
    # The status page's session cookie (service/api/ui) is one more authenticator, on /ui only.
    authenticators = (*build_authenticators(settings, policy, ring), SessionAuthenticator(ring))
    metrics = ApiMetrics()
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[
            request_middleware(problem_answer, metrics.observe_request),
            ui_middleware,
            auth_middleware(authenticators),
        ],
    )
    app[SETTINGS] = settings
    app[METRICS] = metrics
    app[POLICY] = policy
    app[ALLOWLIST] = CallbackAllowlist(settings.callback_allowlist)
    app[WEBHOOKS] = sources
    app[AUTHENTICATORS] = authenticators
    app.cleanup_ctx.append(_store_context(cipher))
    if settings.api_keys_file is not None:
        app.cleanup_ctx.append(_sighup_context(ring))
    app.add_routes(routes)
    app.add_routes(application_routes)
    app.add_routes(webhook_routes)
    setup_ui(app)
    return app


def run_api(settings: Settings, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve the API until SIGINT/SIGTERM, then finish in-flight requests and close Redis."""
    configure_logging(settings)
    setup_tracing(settings, "provisioner-api", server=True)
    app = create_app(settings)
    log.info(
        "api_starting",
        host=host,
        port=port,
        api_keys=len(settings.api_keys),
        api_keys_file=bool(settings.api_keys_file),
        entra_tokens=bool(settings.entra_audience),
        webhook_sources=sorted(app[WEBHOOKS].sources),
    )
    warn_unsigned_callbacks(app)
    tune_gc()
    serve(app, host=host, port=port, shutdown_timeout=30.0)  # run_app, minus echoing bad input
