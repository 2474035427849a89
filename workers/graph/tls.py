"""Trust for outbound TLS: the system's CAs plus ``PROVISIONER_CA_BUNDLE``, for msal and Graph.

msal talks through ``requests``, which lets ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` replace a
session's ``verify=`` without a word; enterprise machines and CI set those. The session built
here pins ``verify`` after requests has merged the environment, so the extra CA is trusted
whatever the environment says, while proxies (``HTTPS_PROXY``, ``NO_PROXY``) are still read
from it. The extra CAs are trusted through an ``ssl.SSLContext`` given to urllib3, so no
combined CA file is ever written. The Graph client's ``aiohttp`` session (:func:`new_session`)
gets an ``ssl.SSLContext`` with the same trust, and the environment's proxy for Graph's host
read once when it is built.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import certifi
import requests
from aiohttp.helpers import get_env_proxy_for_url
from requests.adapters import HTTPAdapter
from yarl import URL

from service.core.settings import Settings


def _base_bundle() -> Path:
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE"):
        value = os.environ.get(name)
        if value and Path(value).is_file():
            return Path(value)
    return Path(certifi.where())


class _TrustAdapter(HTTPAdapter):
    """Verifies servers with one SSL context that trusts the usual CAs and the extra bundle.

    No combined PEM file is written (none is left in the temp directory, whatever the
    number of processes): urllib3 takes the context, and requests' per-request ``ca_certs``
    (the pinned base bundle) is loaded into the same context, adding nothing new."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context  # before super().__init__, which builds the pool manager
        super().__init__()

    def init_poolmanager(self, *args: Any, **pool_kwargs: Any) -> None:
        pool_kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **pool_kwargs)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        proxy_kwargs.setdefault("ssl_context", self._context)  # for the tunnelled target
        return super().proxy_manager_for(proxy, **proxy_kwargs)


class PinnedVerifySession(requests.Session):
    """A requests session whose trust the environment cannot override: the usual CAs (the
    environment's bundle or certifi) plus, when given, the extra bundle (PROVISIONER_CA_BUNDLE)."""

    def __init__(self, extra: Path | None = None) -> None:
        super().__init__()
        base = _base_bundle()
        self.verify = str(base)
        if extra is not None:
            context = ssl.create_default_context(cafile=str(base))
            context.load_verify_locations(cafile=str(extra))
            self.mount("https://", _TrustAdapter(context))

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Any:
        merged = super().merge_environment_settings(url, proxies, stream, verify, cert)
        merged["verify"] = self.verify
        return merged


def ssl_context(extra: Path | None) -> ssl.SSLContext:
    """The SSL context for Graph calls: default trust (honours SSL_CERT_FILE) plus the extra CAs."""
    ctx = ssl.create_default_context()
    if not ctx.get_ca_certs():
        ctx.load_verify_locations(certifi.where())
    if extra is not None:
        ctx.load_verify_locations(cafile=str(extra))
    return ctx


def env_proxy(url: str) -> tuple[URL | None, aiohttp.BasicAuth | None]:
    """The proxy (and its credentials) the environment names for ``url``'s host, as aiohttp's
    ``trust_env`` would pick it (``HTTPS_PROXY``, ``NO_PROXY``, the proxy's ``.netrc`` entry),
    or ``(None, None)`` when the host is to be reached directly."""
    try:
        return get_env_proxy_for_url(URL(url))
    except LookupError:
        return None, None


def new_session(settings: Settings) -> aiohttp.ClientSession:
    """The Graph session: explicit timeouts, the configured CA trust, the proxy the environment
    names for Graph's host (``HTTPS_PROXY`` / ``NO_PROXY``).

    The proxy is looked up here, once, rather than with ``trust_env``: that makes aiohttp look
    up the proxy and ``.netrc`` again in a thread of its pool before every request, two thread
    hops per Graph call (docs/benchmarks.md, sixth round). Graph answers with a bearer token, so no
    ``.netrc`` login is ever wanted for it; aiohttp refuses one beside an Authorization header."""
    # No sock_read: as long as total it never fires first, and it re-arms a timer on every
    # chunk received (3% of a worker's CPU, docs/benchmarks.md, seventh round).
    timeout = aiohttp.ClientTimeout(
        total=settings.graph_timeout_s, connect=settings.graph_connect_timeout_s
    )
    # One connection per concurrent workflow (each makes one call at a time): a fixed pool of
    # 100 made workflows beyond the 100th queue for a connection (benchmarks/worker_cost.py).
    connector = aiohttp.TCPConnector(
        ssl=ssl_context(settings.ca_bundle), limit=max(100, settings.worker_concurrency)
    )
    proxy, proxy_auth = env_proxy(settings.graph_url)
    return aiohttp.ClientSession(
        timeout=timeout,
        connector=connector,
        proxy=proxy,
        proxy_auth=proxy_auth,
        raise_for_status=False,
    )


async def close_quietly(session: aiohttp.ClientSession) -> None:
    """Close the session and give the SSL transports a tick to finish (aiohttp's advice)."""
    await session.close()
    await asyncio.sleep(0.05)
