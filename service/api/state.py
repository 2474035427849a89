"""Every piece of application state the API's handlers read, as typed :class:`web.AppKey`s.

:func:`service.api.app.create_app` fills them once at start-up; handlers, middlewares and the
status page read them from here, so no handler module imports another for its keys.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web
from redis.asyncio import Redis

from service.api.auth.keys import Authenticator
from service.api.auth.policy import AccessPolicy
from service.api.metrics import ApiMetrics
from service.api.ratelimit import IntakeLimits
from service.api.webhooks.sources import WebhookSources
from service.core.settings import Settings
from service.core.ssrf import CallbackAllowlist
from service.core.store import Store

SETTINGS: web.AppKey[Settings] = web.AppKey("settings", Settings)
REDIS: web.AppKey[Redis] = web.AppKey("redis", Redis)
STORE: web.AppKey[Store] = web.AppKey("store", Store)
METRICS: web.AppKey[ApiMetrics] = web.AppKey("metrics", ApiMetrics)
POLICY: web.AppKey[AccessPolicy] = web.AppKey("access_policy", AccessPolicy)
LIMITS: web.AppKey[IntakeLimits] = web.AppKey("intake_limits", IntakeLimits)
ALLOWLIST: web.AppKey[CallbackAllowlist] = web.AppKey("callback_allowlist", CallbackAllowlist)
WEBHOOKS: web.AppKey[WebhookSources] = web.AppKey("webhook_sources", WebhookSources)
AUTHENTICATORS: web.AppKey[Sequence[Authenticator]] = web.AppKey("authenticators", Sequence)
