"""Caller authentication: ``Authorization: Bearer <api key or Entra ID access token>``.

The middleware asks each :class:`Authenticator` in turn; the first that recognises the request
names the caller, stored on the request under :data:`CALLER`. API keys are looked up by their
SHA-256 (one dict lookup, whose timing tells nothing about a key's characters) among
``PROVISIONER_API_KEYS`` and, when set, ``PROVISIONER_API_KEYS_FILE``
(re-read on SIGHUP and when its mtime changes, checked at most every
``PROVISIONER_API_KEYS_RELOAD_S``), so a key is revoked without a restart. Entra ID tokens are
checked by :mod:`service.api.auth.entra`, which also leaves the token's roles under
:data:`TOKEN_ROLES` (absent for API keys). Unauthenticated requests get 401 problem+json with
``WWW-Authenticate: Bearer``, except for the public operational endpoints and the webhooks
(which authenticate themselves, see :mod:`service.api.webhooks.handler`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import structlog
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from service.api.middleware import CALLER
from service.api.problems import Problem
from service.core.config_values import ApiKey, hash_api_key, read_api_keys_file

__all__ = [
    "CALLER",
    "PUBLIC_PATHS",
    "TOKEN_ROLES",
    "ApiKeyAuthenticator",
    "ApiKeyRing",
    "Authenticator",
    "auth_middleware",
    "authenticate",
    "bearer_token",
]

#: ``/ui/login`` is the status page's key prompt (:mod:`service.api.ui`); it checks the key itself.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", "/ui/login"})
#: Paths below this prefix authenticate themselves (signatures; see :mod:`service.api.webhooks`).
SELF_AUTHENTICATED_PREFIX = "/v1/webhooks/"
_MAX_TOKEN_CHARS = 8192
#: The roles and scopes of the Entra ID token that authenticated a request (not set for keys).
TOKEN_ROLES: web.RequestKey[frozenset[str]] = web.RequestKey("token_roles", frozenset)

log = structlog.get_logger(__name__)


class Authenticator(Protocol):
    """Something that can tell who sent a request."""

    async def authenticate(self, request: web.Request) -> str | None:
        """The caller's name, or None when this authenticator does not accept the request."""
        ...


def bearer_token(request: web.Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header, or None."""
    header = request.headers.get(hdrs.AUTHORIZATION, "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > _MAX_TOKEN_CHARS:
        return None
    return token


class ApiKeyRing:
    """The configured keys plus those of a keys file, re-read when it changes or on SIGHUP.

    A file that cannot be read or parsed on reload keeps the previous keys and logs
    ``api_keys_reload_failed`` (write the file atomically: write a temporary file, then rename).
    """

    def __init__(
        self,
        static: Sequence[ApiKey],
        path: Path | None = None,
        *,
        check_every_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._static = tuple(static)
        self.path = path
        self.check_every_s = check_every_s
        self._clock = clock
        self._file_keys: tuple[ApiKey, ...] = ()
        self._mtime: float | None = None
        self._checked_at = clock()
        if path is not None:
            self._file_keys = read_api_keys_file(path)
            self._mtime = _mtime(path)
        self._index()

    def _index(self) -> None:
        # By SHA-256 hex digest (a later entry wins, as the keys file's order says).
        self._by_digest = {key.sha256: key.name for key in self._static + self._file_keys}

    def _look(self) -> None:
        """Re-read the file when its mtime moved (looked at most every ``check_every_s``)."""
        if self.path is not None and self._clock() - self._checked_at >= self.check_every_s:
            self._checked_at = self._clock()
            if _mtime(self.path) != self._mtime:
                self.reload()

    def current(self) -> tuple[ApiKey, ...]:
        """The keys in force."""
        self._look()
        return self._static + self._file_keys

    def name_for(self, digest: str) -> str | None:
        """The name of the key in force with this SHA-256 hex digest, or None: one dict lookup.
        Its timing depends on the digest of what was sent, which tells an attacker nothing
        about how close a guess came to a key (no prefix of a key is ever compared)."""
        self._look()
        return self._by_digest.get(digest)

    def reload(self) -> None:
        """Re-read the keys file now (the SIGHUP handler calls this)."""
        if self.path is None:
            return
        mtime = _mtime(self.path)
        try:
            keys = read_api_keys_file(self.path)
        except ValueError as e:
            log.error("api_keys_reload_failed", error=str(e))
            self._mtime = mtime
            return
        self._file_keys, self._mtime = keys, mtime
        self._index()
        log.info("api_keys_reloaded", keys=len(keys))


def _mtime(path: Path) -> float | None:
    try:
        return os.stat(path).st_mtime_ns / 1e9
    except OSError:
        return None


class ApiKeyAuthenticator:
    """Accepts a bearer token whose SHA-256 matches a configured API key."""

    def __init__(self, keys: Sequence[ApiKey] | ApiKeyRing) -> None:
        self._ring = keys if isinstance(keys, ApiKeyRing) else ApiKeyRing(keys)

    async def authenticate(self, request: web.Request) -> str | None:
        token = bearer_token(request)
        if token is None:
            return None
        return self.caller_for_key(token)

    def names(self) -> tuple[str, ...]:
        """The callers the keys in force belong to."""
        return tuple(key.name for key in self._ring.current())

    def caller_for_key(self, token: str) -> str | None:
        """The name of the API key ``token``, or None (also used by the status page's login)."""
        return self._ring.name_for(hash_api_key(token))


async def authenticate(authenticators: Sequence[Authenticator], request: web.Request) -> str | None:
    """The caller named by the first authenticator that accepts the request, or None."""
    for authenticator in authenticators:
        caller = await authenticator.authenticate(request)
        if caller is not None:
            return caller
    return None


def _unauthorized() -> Problem:
    return Problem(
        401,
        "Unauthorized",
        "Send a valid API key or Entra ID access token as 'Authorization: Bearer <token>'.",
        headers={"WWW-Authenticate": 'Bearer realm="provisioner"'},
    )


def auth_middleware(authenticators: Sequence[Authenticator]) -> Middleware:
    """Reject requests no authenticator accepts; public paths pass without credentials."""
    chain = tuple(authenticators)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PUBLIC_PATHS or request.path.startswith(SELF_AUTHENTICATED_PREFIX):
            return await handler(request)
        caller = await authenticate(chain, request)
        if caller is None:
            raise _unauthorized()
        request[CALLER] = caller
        return await handler(request)

    return middleware
