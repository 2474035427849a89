"""App-only access tokens for Graph, from one msal ``ConfidentialClientApplication`` per worker.

msal is synchronous and its constructor already does network I/O (the authority's discovery
document), so the app is built once at worker start-up in a thread and every call goes through
``asyncio.to_thread``. msal caches the token and refreshes it shortly before it expires; a Graph
401 ``InvalidAuthenticationToken`` makes the Graph client call :meth:`TokenProvider.invalidate`
so the next call fetches a new one. Between two asks the token msal gave is reused for a tenth
of its remaining lifetime, at most a minute: a thread hop and msal's cache search on every
Graph call were a large part of a worker's CPU (docs/benchmarks.md, (D)), and msal is still
asked often enough to refresh it on its own schedule.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import msal
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from service.core.errors import ConfigError, TokenError
from service.core.settings import Settings
from workers.graph.tls import PinnedVerifySession

#: The longest a token msal gave is reused before msal is asked again.
_REUSE_MAX_S = 60.0


def token_roles(token: str) -> tuple[str, ...] | None:
    """The ``roles`` claim of our own access token: its payload base64url-decoded, no
    signature check (msal gave it to us). None when the token is not a readable JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        return None
    roles = claims.get("roles") if isinstance(claims, dict) else None
    if roles is None:
        return ()
    return tuple(str(r) for r in roles) if isinstance(roles, list) else None


def certificate_credential(pem: bytes) -> dict[str, str]:
    """msal's certificate credential from a PEM holding the private key and the certificate."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError as e:
        raise ConfigError(
            "PROVISIONER_CLIENT_CERTIFICATE_PATH: no PEM certificate found in the file"
        ) from e
    if b"PRIVATE KEY-----" not in pem:
        raise ConfigError("PROVISIONER_CLIENT_CERTIFICATE_PATH: the PEM holds no private key")
    return {
        "private_key": pem.decode(),
        "thumbprint": cert.fingerprint(hashes.SHA1()).hex(),  # noqa: S303 - x5t is defined as SHA-1
        "public_certificate": cert.public_bytes(serialization.Encoding.PEM).decode(),
    }


class TokenProvider:
    """Wraps one msal app; :meth:`token` returns a valid access token for the Graph scope."""

    def __init__(self, app: Any, scope: str) -> None:
        self._app = app
        self._scopes = [scope]
        self._lock = threading.Lock()
        self.acquisitions = 0  # tokens fetched from the network, for metrics and tests
        self.on_acquire: Callable[[], None] | None = None
        self._reuse: tuple[str, float] | None = None  # (token, monotonic time to ask again)

    @classmethod
    async def create(cls, settings: Settings) -> TokenProvider:
        """Build the msal app (blocking I/O, so in a thread) from the settings."""
        settings.require_tenant()
        if settings.client_certificate_path is not None:
            credential: Any = certificate_credential(settings.client_certificate_path.read_bytes())
        else:
            assert settings.client_secret is not None
            credential = settings.client_secret.get_secret_value()
        session = PinnedVerifySession(settings.ca_bundle)

        def build() -> Any:
            return msal.ConfidentialClientApplication(
                settings.client_id,
                client_credential=credential,
                authority=settings.authority,
                http_client=session,
                # A non-Microsoft host (sovereign proxy, the sandbox) must not be checked against
                # login.microsoftonline.com's instance list.
                instance_discovery=settings.microsoft_authority,
                validate_authority=settings.microsoft_authority,
                timeout=(settings.graph_connect_timeout_s, settings.graph_timeout_s),
            )

        try:
            app = await asyncio.to_thread(build)
        except ValueError as e:
            raise ConfigError(
                f"PROVISIONER_AUTHORITY_HOST: msal rejected the authority: {e}"
            ) from e
        except OSError as e:
            raise TokenError("authority_unreachable", f"{settings.authority}: {e}") from e
        return cls(app, settings.scope)

    def _acquire(self) -> str:
        with self._lock:  # the reuse is set under the lock too: invalidate() clears both
            cached = self._app.acquire_token_for_client(scopes=self._scopes)
            self._reuse = None
            if "access_token" in cached:
                reuse_s = min(_REUSE_MAX_S, 0.1 * float(cached.get("expires_in") or 0))
                deadline = time.monotonic() + reuse_s
                self._reuse = (str(cached["access_token"]), deadline) if reuse_s > 0 else None
        if "access_token" not in cached:
            raise TokenError(
                str(cached.get("error", "no_token")),
                str(cached.get("error_description", "msal returned no access token")).splitlines()[
                    0
                ],
                list(cached.get("error_codes") or []),
            )
        if cached.get("token_source") == "identity_provider":
            self.acquisitions += 1
            if self.on_acquire is not None:
                self.on_acquire()
        return str(cached["access_token"])

    async def token(self) -> str:
        """A current access token (from msal's cache when still valid)."""
        reuse = self._reuse
        if reuse is not None and time.monotonic() < reuse[1]:
            return reuse[0]
        try:
            return await asyncio.to_thread(self._acquire)
        except OSError as e:
            raise TokenError("authority_unreachable", type(e).__name__) from e

    async def roles(self) -> tuple[str, ...] | None:
        """The current token's ``roles`` (see :func:`token_roles`)."""
        return token_roles(await self.token())

    async def refresh(self) -> None:
        """Drop the cached token: roles granted since it was issued show in the next one."""
        await self.invalidate(await self.token())

    async def invalidate(self, token: str) -> None:
        """Drop ``token`` from msal's cache so the next :meth:`token` fetches a fresh one."""

        self._reuse = None

        def drop() -> None:
            with self._lock:
                self._reuse = None
                cache = self._app.token_cache
                entries = list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN))
                for entry in entries:
                    if entry.get("secret") == token:
                        cache.remove_at(entry)

        await asyncio.to_thread(drop)
