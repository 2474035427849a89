"""Start-up checks of the API that only warn (errors stop start-up in :func:`create_app`)."""

from __future__ import annotations

import structlog
from aiohttp import web

from service.api.auth.keys import ApiKeyAuthenticator
from service.api.state import AUTHENTICATORS, POLICY, SETTINGS, WEBHOOKS

__all__ = ["known_callers", "warn_unsigned_callbacks"]

log = structlog.get_logger("service.api.startup")


def known_callers(app: web.Application) -> list[str]:
    """Every caller name the configuration knows of: API keys, policy entries, webhook sources
    (Entra callers not named in the policy, ``entra:<appid>``, are known only when they call)."""
    names: set[str] = set(app[POLICY].callers)
    names.update(source.caller for source in app[WEBHOOKS].sources.values())
    for authenticator in app[AUTHENTICATORS]:
        if isinstance(authenticator, ApiKeyAuthenticator):
            names.update(authenticator.names())
    return sorted(names)


def warn_unsigned_callbacks(app: web.Application) -> list[str]:
    """Warn once about the known callers without a callback secret: a callback is never sent
    unsigned, so theirs are not sent (each skipped one is recorded on its request)."""
    settings = app[SETTINGS]
    missing = [c for c in known_callers(app) if settings.callback_secret(c) is None]
    if missing:
        log.warning(
            "callback_secret_missing",
            callers=missing,
            detail="callbacks of these callers are not sent: give each a whsec_ secret in "
            "PROVISIONER_CALLBACK_SECRETS",
        )
    return missing
