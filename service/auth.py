"""Caller authentication: ``Authorization: Bearer <api key>`` against the configured key hashes.

The middleware asks each :class:`Authenticator` in turn; the first that recognises the request
names the caller, stored on the request under :data:`CALLER`. A later issue adds Entra ID JWTs
as a second authenticator. Unauthenticated requests get 401 problem+json with
``WWW-Authenticate: Bearer``, except for the public operational endpoints.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Protocol

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from service.config import ApiKey, hash_api_key
from service.logs import CALLER
from service.problems import Problem

__all__ = [
    "CALLER",
    "PUBLIC_PATHS",
    "ApiKeyAuthenticator",
    "Authenticator",
    "auth_middleware",
    "bearer_token",
]

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})
_MAX_TOKEN_CHARS = 4096


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


class ApiKeyAuthenticator:
    """Accepts a bearer token whose SHA-256 matches a configured API key."""

    def __init__(self, keys: Sequence[ApiKey]) -> None:
        self._keys = tuple(keys)

    async def authenticate(self, request: web.Request) -> str | None:
        token = bearer_token(request)
        if token is None:
            return None
        digest = hash_api_key(token).encode()
        caller: str | None = None
        # Compare against every entry, without stopping early, so timing reveals nothing.
        for key in self._keys:
            if hmac.compare_digest(digest, key.sha256.encode()):
                caller = key.name
        return caller


def _unauthorized() -> Problem:
    return Problem(
        401,
        "Unauthorized",
        "Send a valid API key as 'Authorization: Bearer <key>'.",
        headers={"WWW-Authenticate": 'Bearer realm="provisioner"'},
    )


def auth_middleware(authenticators: Sequence[Authenticator]) -> Middleware:
    """Reject requests no authenticator accepts; public paths pass without credentials."""
    chain = tuple(authenticators)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PUBLIC_PATHS:
            return await handler(request)
        for authenticator in chain:
            caller = await authenticator.authenticate(request)
            if caller is not None:
                request[CALLER] = caller
                return await handler(request)
        raise _unauthorized()

    return middleware
