"""Entra ID access tokens as bearer credentials, validated against the tenant's published keys.

The OIDC discovery document (``{authority}/{tenant}/v2.0/.well-known/openid-configuration``)
gives the issuer and the JWKS URL; the keys are cached and fetched again only for a ``kid`` the
cache does not know, at most once per ``PROVISIONER_JWKS_REFRESH_S`` (60 s). A token is accepted
when: its header says ``alg: RS256`` (nothing else, so ``none`` and HS256 fail) with a known
``kid``; the signature verifies; ``iss`` is the discovery issuer (or Entra's v1.0 issuer
``https://sts.windows.net/{tenant}/``); ``aud`` is ``PROVISIONER_ENTRA_AUDIENCE`` (this API's
app id URI); ``exp`` / ``nbf`` hold within ``PROVISIONER_ENTRA_LEEWAY_S``; ``tid`` is the
tenant. The caller is the policy's name for the token's ``appid``/``azp``, else
``entra:{appid}``; the token's ``roles`` and ``scp`` are kept on the request for authorization.

Tokens are never logged; a rejection logs only its reason.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import structlog
from aiohttp import web

from service.api.auth.keys import TOKEN_ROLES, bearer_token
from service.api.auth.policy import AccessPolicy
from service.api.problems import Problem

__all__ = ["EntraAuthenticator", "JwksCache", "tls_context"]

log = structlog.get_logger(__name__)
FETCH_TIMEOUT_S = 5.0
FAILED_FETCH_RETRY_S = 5


def tls_context(ca_bundle: Path | None) -> ssl.SSLContext:
    """Default trust plus ``PROVISIONER_CA_BUNDLE`` (the sandbox's CA in tests)."""
    ctx = ssl.create_default_context()
    if ca_bundle is not None:
        ctx.load_verify_locations(cafile=str(ca_bundle))
    return ctx


class JwksCache:
    """The issuer and signing keys of one tenant, fetched lazily and refreshed on unknown kids."""

    def __init__(
        self,
        discovery_url: str,
        *,
        ssl_context: ssl.SSLContext,
        min_refresh_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.discovery_url = discovery_url
        self._ssl = ssl_context
        self.min_refresh_s = min_refresh_s
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self.issuer: str | None = None
        self._next_fetch_at = float("-inf")
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def key(self, kid: str) -> jwt.PyJWK | None:
        """The key for ``kid``; an unknown kid triggers at most one fetch per interval."""
        if kid in self._keys:
            return self._keys[kid]
        async with self._lock:
            if kid not in self._keys and self._clock() >= self._next_fetch_at:
                await self._fetch()
        if self.issuer is None:  # never fetched: no token can be judged
            raise Problem(
                503,
                "Service Unavailable",
                "The identity provider's signing keys cannot be fetched; retry shortly.",
                slug="jwks-unavailable",
                headers={"Retry-After": str(FAILED_FETCH_RETRY_S)},
            )
        return self._keys.get(kid)

    async def _fetch(self) -> None:
        now = self._clock()
        self._next_fetch_at = now + min(FAILED_FETCH_RETRY_S, self.min_refresh_s)
        self.fetches += 1
        timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
        connector = aiohttp.TCPConnector(ssl=self._ssl)
        try:
            async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
                discovery = await _get_json(session, self.discovery_url)
                jwks = await _get_json(session, str(discovery["jwks_uri"]))
        except (aiohttp.ClientError, OSError, TimeoutError, KeyError, ValueError) as e:
            log.warning("jwks_fetch_failed", error=type(e).__name__)
            return
        self._next_fetch_at = now + self.min_refresh_s
        keys: dict[str, jwt.PyJWK] = {}
        for item in jwks.get("keys", []):
            if not isinstance(item, dict) or item.get("kty") != "RSA" or "kid" not in item:
                continue
            if item.get("use", "sig") != "sig" or item.get("alg", "RS256") != "RS256":
                continue
            try:
                keys[str(item["kid"])] = jwt.PyJWK(item, algorithm="RS256")
            except jwt.PyJWTError:
                continue
        self._keys = keys
        self.issuer = str(discovery["issuer"])
        log.info("jwks_fetched", keys=len(keys))


async def _get_json(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    if not url.startswith("https://"):
        raise ValueError("discovery and JWKS URLs must be https")
    async with session.get(url) as resp:
        resp.raise_for_status()
        data = await resp.json(content_type=None)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


class EntraAuthenticator:
    """Accepts an Entra ID access token issued for this API by the configured tenant."""

    def __init__(
        self,
        cache: JwksCache,
        *,
        tenant_id: str,
        audience: str,
        leeway_s: float,
        policy: AccessPolicy,
    ) -> None:
        self.cache = cache
        self.tenant_id = tenant_id.lower()
        self.audience = audience
        self.leeway_s = leeway_s
        self.policy = policy

    async def authenticate(self, request: web.Request) -> str | None:
        token = bearer_token(request)
        if token is None or token.count(".") != 2:
            return None
        claims = await self.validate(token)
        if claims is None:
            return None
        app_id = str(claims.get("appid") or claims.get("azp") or "").lower()
        caller = self.policy.caller_for_app(app_id) if app_id else None
        roles = {str(r) for r in claims.get("roles") or () if isinstance(r, str)}
        scp = claims.get("scp")
        if isinstance(scp, str):
            roles.update(scp.split())
        request[TOKEN_ROLES] = frozenset(roles)
        return caller or f"entra:{app_id or claims.get('oid') or 'unknown'}"

    async def validate(self, token: str) -> dict[str, Any] | None:
        """The token's claims when it is acceptable, else None (the reason is logged)."""
        try:
            key = await self.cache.key(_key_id(token))
            if key is None:
                raise _Rejected("unknown_kid")
            claims = self._decode(token, key)
            accepted = {self.cache.issuer or "", f"https://sts.windows.net/{self.tenant_id}/"}
            if claims.get("iss") not in accepted:
                raise _Rejected("issuer")
            if str(claims.get("tid", "")).lower() != self.tenant_id:
                raise _Rejected("tenant")
        except _Rejected as rejected:
            return _reject(rejected.reason)
        return claims

    def _decode(self, token: str, key: jwt.PyJWK) -> dict[str, Any]:
        """The signature, audience and lifetime checked; the issuer is checked by the caller."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=self.audience,
                leeway=self.leeway_s,
                options={"require": ["exp", "iss", "aud", "tid"], "verify_iss": False},
            )
        except jwt.ExpiredSignatureError as e:
            raise _Rejected("expired") from e
        except jwt.ImmatureSignatureError as e:
            raise _Rejected("not_yet_valid") from e
        except jwt.InvalidAudienceError as e:
            raise _Rejected("audience") from e
        except jwt.PyJWTError as e:
            raise _Rejected("invalid") from e
        return claims


class _Rejected(Exception):
    """A token refused for ``reason`` (a fixed word, logged; never the token)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _key_id(token: str) -> str:
    """The signing key's id from an RS256 token's header."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as e:
        raise _Rejected("malformed") from e
    if header.get("alg") != "RS256":
        raise _Rejected("algorithm")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise _Rejected("no_kid")
    return kid


def _reject(reason: str) -> dict[str, Any] | None:
    log.info("bearer_token_rejected", reason=reason)
    return None
