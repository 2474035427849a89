"""Status-page sessions: sign-in with an API key, the session cookie, its authenticator, CSRF.

``POST /ui/login`` with an API key stores ``{p}:ui-session:{sha256(session id)}`` in Redis for
8 hours: the caller's name and a fingerprint of the key's configured digest (never the key, never
the usable session id). The browser gets the session id as an ``HttpOnly; SameSite=Strict;
Path=/ui`` cookie (``Secure`` over https or with ``PROVISIONER_UI_COOKIE_SECURE``).

:class:`SessionAuthenticator` joins the API's authenticator chain (on ``/ui`` paths only) and, on
every request, checks that the key ring (:class:`service.api.auth.keys.ApiKeyRing`, re-read on
SIGHUP and when the keys file changes) still holds that key under that name: a key revoked or
rotated ends its sessions at once. Sign-in attempts are limited per client address
(:mod:`service.api.ui.login_limit`); both POSTs need a same-host ``Origin`` or ``Referer``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from urllib.parse import urlsplit

import structlog
from aiohttp import hdrs, web

from service.api.access import may
from service.api.auth.keys import ApiKeyRing
from service.api.auth.policy import Permission
from service.api.problems import Problem
from service.api.state import AUTHENTICATORS, REDIS, SETTINGS, STORE
from service.api.ui.login_limit import take_login_attempt
from service.api.ui.render import page, redirect
from service.core.config_values import ApiKey, hash_api_key
from service.core.redis import guarded

__all__ = [
    "SESSION_COOKIE",
    "SESSION_TTL_S",
    "UI_PREFIX",
    "SessionAuthenticator",
    "is_ui",
    "routes",
]

UI_PREFIX = "/ui"
SESSION_COOKIE = "provisioner_ui_session"
SESSION_TTL_S = 8 * 3600
_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{32,64}$")
_MAX_KEY_CHARS = 4096
_FINGERPRINT_CONTEXT = b"provisioner-ui-session\x00"

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()


def is_ui(path: str) -> bool:
    """True for the status page's paths."""
    return path == UI_PREFIX or path.startswith(UI_PREFIX + "/")


def key_fingerprint(key: ApiKey) -> str:
    """What a session remembers of its key: a hash of the key's configured digest."""
    return hashlib.sha256(_FINGERPRINT_CONTEXT + key.sha256.encode()).hexdigest()


def _redis_key(request: web.Request, session_id: str) -> str:
    digest = hashlib.sha256(session_id.encode()).hexdigest()
    return request.app[STORE].keys.ui_session(digest)


def _session_id(request: web.Request) -> str | None:
    value = request.cookies.get(SESSION_COOKIE, "")
    return value if _SESSION_ID.match(value) else None


class SessionAuthenticator:
    """Accepts the status page's session cookie, on ``/ui`` paths only (never on ``/v1``), while
    the key it was made with is still in the ring."""

    def __init__(self, ring: ApiKeyRing) -> None:
        self.ring = ring

    def key_for(self, token: str) -> ApiKey | None:
        """The configured key ``token`` is, or None (every entry compared, in constant time)."""
        digest = hash_api_key(token).encode()
        found: ApiKey | None = None
        for key in self.ring.current():
            if hmac.compare_digest(digest, key.sha256.encode()):
                found = key
        return found

    def holds(self, caller: str, fingerprint: str) -> bool:
        """True while the ring has a key named ``caller`` with this fingerprint."""
        held = False
        for key in self.ring.current():
            if key.name == caller and hmac.compare_digest(key_fingerprint(key), fingerprint):
                held = True
        return held

    async def authenticate(self, request: web.Request) -> str | None:
        session_id = _session_id(request) if is_ui(request.path) else None
        if session_id is None:
            return None
        redis_key = _redis_key(request, session_id)
        raw = await guarded(lambda: request.app[REDIS].get(redis_key))
        session = _parse(raw)
        if session is None:
            return None
        caller, fingerprint = session
        if not self.holds(caller, fingerprint):
            log.info("ui_session_ended", caller=caller, reason="api key revoked or rotated")
            await guarded(lambda: request.app[REDIS].delete(redis_key))
            return None
        return caller


def _parse(raw: bytes | str | None) -> tuple[str, str] | None:
    """``(caller, key fingerprint)`` of a stored session; None for anything else."""
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    caller, fingerprint = value.get("caller"), value.get("key")
    if not isinstance(caller, str) or not isinstance(fingerprint, str):
        return None
    return caller, fingerprint


def sessions(request: web.Request) -> SessionAuthenticator:
    """The app's session authenticator (the last of its chain)."""
    for authenticator in request.app[AUTHENTICATORS]:
        if isinstance(authenticator, SessionAuthenticator):
            return authenticator
    raise RuntimeError("the status page needs a SessionAuthenticator in the chain")


def same_origin(request: web.Request) -> bool:
    """CSRF check for the POSTs: an ``Origin`` (else ``Referer``) naming this host."""
    source = request.headers.get(hdrs.ORIGIN) or request.headers.get(hdrs.REFERER)
    if not source or source == "null":
        return False
    parts = urlsplit(source)
    return parts.scheme in {"http", "https"} and parts.netloc.lower() == request.host.lower()


def _forbidden(detail: str) -> Problem:
    return Problem(403, "Forbidden", detail)


def _login_page(request: web.Request, error: str | None = None, status: int = 200) -> web.Response:
    return page(request, "login.html", {"title": "Sign in", "error": error}, status=status)


@routes.get(UI_PREFIX + "/login")
async def login_page(request: web.Request) -> web.Response:
    """The key prompt (public)."""
    if await sessions(request).authenticate(request) is not None:
        return redirect(UI_PREFIX)
    return _login_page(request)


@routes.post(UI_PREFIX + "/login")
async def login(request: web.Request) -> web.Response:
    """Check a pasted API key; on success a session cookie and a 303 to ``/ui``."""
    if not same_origin(request):
        raise _forbidden("Sign in from this site's own sign-in page.")
    await take_login_attempt(request)
    form = await request.post()
    token = form.get("apiKey")
    key = None
    if isinstance(token, str) and 0 < len(token.strip()) <= _MAX_KEY_CHARS:
        key = sessions(request).key_for(token.strip())
    if key is None:
        log.info("ui_login_failed")
        return _login_page(request, "That API key is not valid.", status=401)
    if not may(request, Permission.READ, key.name):
        return _login_page(request, "This key's caller lacks the 'read' permission.", status=403)
    session_id = secrets.token_urlsafe(32)
    redis_key = _redis_key(request, session_id)
    value = json.dumps({"caller": key.name, "key": key_fingerprint(key)})
    await guarded(lambda: request.app[REDIS].set(redis_key, value, ex=SESSION_TTL_S))
    log.info("ui_login", caller=key.name)
    response = redirect(UI_PREFIX)
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=SESSION_TTL_S,
        path=UI_PREFIX,
        httponly=True,
        samesite="Strict",
        secure=request.secure or request.app[SETTINGS].ui_cookie_secure,
    )
    return response


@routes.post(UI_PREFIX + "/logout")
async def logout(request: web.Request) -> web.Response:
    """End the session (its Redis key and the cookie) and go back to the key prompt."""
    if not same_origin(request):
        raise _forbidden("Sign out from this site's own pages.")
    session_id = _session_id(request)
    if session_id is not None:
        redis_key = _redis_key(request, session_id)
        await guarded(lambda: request.app[REDIS].delete(redis_key))
    response = redirect(UI_PREFIX + "/login")
    response.del_cookie(SESSION_COOKIE, path=UI_PREFIX)
    return response
