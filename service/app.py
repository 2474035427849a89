"""The intake API application: middlewares, resources and routes.

State lives under :class:`web.AppKey`s (:data:`SETTINGS`, :data:`REDIS`, :data:`STORE`,
:data:`METRICS`); the Redis client and the store are made by one ``cleanup_ctx`` at start-up and
closed at shutdown. Middlewares, outermost first: request id + one log line, metrics, problem+json
errors, authentication.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import structlog
from aiohttp import web
from redis.asyncio import Redis

from service import redis_conn
from service.auth import ApiKeyAuthenticator, auth_middleware
from service.config import Settings
from service.crypto import CredentialCipher
from service.logs import configure_logging, logging_middleware
from service.metrics import ApiMetrics, metrics_middleware
from service.problems import problem_middleware
from service.routes import METRICS, REDIS, SETTINGS, STORE, routes
from service.store import Store
from service.tracing import setup_tracing

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
        )
        try:
            yield
        finally:
            await client.aclose()

    return redis_and_store


def create_app(settings: Settings) -> web.Application:
    """Build the API; a bad encryption key raises :class:`ConfigError` here, before serving."""
    cipher = CredentialCipher(settings.encryption_keys) if settings.encryption_keys else None
    metrics = ApiMetrics()
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[
            logging_middleware,
            metrics_middleware(metrics),
            problem_middleware,
            auth_middleware([ApiKeyAuthenticator(settings.api_keys)]),
        ],
    )
    app[SETTINGS] = settings
    app[METRICS] = metrics
    app.cleanup_ctx.append(_store_context(cipher))
    app.add_routes(routes)
    return app


def run_api(settings: Settings, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve the API until SIGINT/SIGTERM, then finish in-flight requests and close Redis."""
    configure_logging(settings)
    setup_tracing(settings, "provisioner-api", server=True)
    app = create_app(settings)
    log.info("api_starting", host=host, port=port, api_keys=len(settings.api_keys))
    web.run_app(
        app,
        host=host,
        port=port,
        access_log=None,
        print=None,
        shutdown_timeout=30.0,
    )
