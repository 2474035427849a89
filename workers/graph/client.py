"""The Microsoft Graph client: one ``aiohttp.ClientSession``, typed errors, no workflow knowledge.

Every non-2xx answer becomes a :class:`~service.core.errors.GraphError` carrying Graph's status,
error code, message, ``request-id`` and parsed ``Retry-After``; a call that gets no answer becomes a
:class:`~service.core.errors.GraphTransportError`. Retrying is the caller's business (the policy
lives in :mod:`workers.workflow.retry`), with one exception that belongs to authentication: a 401
``InvalidAuthenticationToken`` drops the cached token and repeats the call once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import aiohttp

from service.core.errors import GraphError, GraphTransportError
from service.core.settings import Settings
from workers.graph.tls import ssl_context
from workers.graph.token import TokenProvider
from workers.workflow.retry import parse_retry_after

CallObserver = Callable[[str, str, int], None]  # (method, route, status) -> None; 0 = no answer


@dataclass(frozen=True, slots=True)
class GraphResponse:
    """A 2xx answer: status, parsed JSON body (None when empty) and the ids to quote."""

    status: int
    body: Any
    request_id: str | None
    client_request_id: str
    throttle_usage: str | None = None  # x-ms-throttle-limit-percentage, when Graph sent it


def new_session(settings: Settings) -> aiohttp.ClientSession:
    """The Graph session: explicit timeouts, the configured CA trust, proxies from the
    environment (``HTTPS_PROXY`` / ``NO_PROXY``)."""
    timeout = aiohttp.ClientTimeout(
        total=settings.graph_timeout_s,
        connect=settings.graph_connect_timeout_s,
        sock_read=settings.graph_timeout_s,
    )
    # One connection per concurrent workflow (each makes one call at a time): a fixed pool of
    # 100 made workflows beyond the 100th queue for a connection (benchmarks/worker_cost.py).
    connector = aiohttp.TCPConnector(
        ssl=ssl_context(settings.ca_bundle), limit=max(100, settings.worker_concurrency)
    )
    return aiohttp.ClientSession(
        timeout=timeout, connector=connector, trust_env=True, raise_for_status=False
    )


class GraphClient:
    """Calls Graph's synchronization endpoints for one tenant."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        tokens: TokenProvider,
        observe: CallObserver | None = None,
    ) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._tokens = tokens
        self._observe = observe

    async def request(
        self,
        method: str,
        url: str,
        *,
        client_request_id: str,
        json: Any = None,
        route: str = "",
    ) -> GraphResponse:
        """One call; ``url`` is a path under the Graph base URL or an absolute nextLink."""
        full = url if url.startswith(("https://", "http://")) else f"{self._base}{url}"
        token = await self._tokens.token()
        try:
            return await self._send(method, full, token, client_request_id, json, route)
        except GraphError as e:
            if e.status != 401 or e.code != "InvalidAuthenticationToken":
                raise
            await self._tokens.invalidate(token)
            token = await self._tokens.token()
            return await self._send(method, full, token, client_request_id, json, route)

    async def _send(
        self, method: str, url: str, token: str, crid: str, body: Any, route: str
    ) -> GraphResponse:
        headers = {
            "Authorization": f"Bearer {token}",
            "client-request-id": crid,
            "Accept": "application/json",
        }
        try:
            async with self._session.request(method, url, headers=headers, json=body) as resp:
                raw = await resp.read()
                status = resp.status
                request_id = resp.headers.get("request-id")
                retry_after = resp.headers.get("Retry-After")
                usage = resp.headers.get("x-ms-throttle-limit-percentage")
                is_json = "json" in resp.headers.get("Content-Type", "")
        except (aiohttp.ClientError, TimeoutError) as e:
            self._note(method, route, 0)
            reason = type(e).__name__ if isinstance(e, TimeoutError) else f"{type(e).__name__}"
            raise GraphTransportError(method, url, reason, crid) from e
        self._note(method, route, status)
        parsed = _json(raw) if raw and is_json else None
        if 200 <= status < 300:
            return GraphResponse(status, parsed, request_id, crid, usage)
        err = parsed.get("error") if isinstance(parsed, dict) else None
        err = err if isinstance(err, dict) else {}
        inner = err.get("innerError") if isinstance(err.get("innerError"), dict) else {}
        raise GraphError(
            status,
            str(err.get("code") or f"HTTP{status}"),
            str(err.get("message") or ""),
            request_id or (inner or {}).get("request-id"),
            parse_retry_after(retry_after),
            client_request_id=crid,
            method=method,
            url=url,
        )

    def _note(self, method: str, route: str, status: int) -> None:
        if self._observe is not None:
            self._observe(method, route, status)

    async def list_all(
        self, path: str, *, client_request_id: str, route: str
    ) -> tuple[list[dict[str, Any]], GraphResponse]:
        """Every item of a collection, following ``@odata.nextLink`` as an opaque URL."""
        items: list[dict[str, Any]] = []
        url: str | None = path
        last: GraphResponse | None = None
        while url:
            last = await self.request("GET", url, client_request_id=client_request_id, route=route)
            body = last.body if isinstance(last.body, dict) else {}
            items.extend(v for v in body.get("value", []) if isinstance(v, dict))
            next_link = body.get("@odata.nextLink")
            # An opaque URL, normally absolute; resolved against the base should one be relative.
            url = urljoin(f"{self._base}/", next_link) if isinstance(next_link, str) else None
        assert last is not None
        return items, last

    # Graph's synchronization endpoints ---------------------------------------------------
    @staticmethod
    def _sync(sp: str) -> str:
        return f"/servicePrincipals/{sp}/synchronization"

    async def list_templates(
        self, sp: str, crid: str
    ) -> tuple[list[dict[str, Any]], GraphResponse]:
        """GET .../synchronization/templates, all pages."""
        return await self.list_all(
            f"{self._sync(sp)}/templates", client_request_id=crid, route="templates.list"
        )

    async def list_jobs(self, sp: str, crid: str) -> tuple[list[dict[str, Any]], GraphResponse]:
        """GET .../synchronization/jobs, all pages."""
        return await self.list_all(
            f"{self._sync(sp)}/jobs", client_request_id=crid, route="jobs.list"
        )

    async def create_job(self, sp: str, template_id: str, crid: str) -> GraphResponse:
        """POST .../synchronization/jobs: not idempotent, the caller lists jobs first."""
        return await self.request(
            "POST",
            f"{self._sync(sp)}/jobs",
            json={"templateId": template_id},
            client_request_id=crid,
            route="jobs.create",
        )

    async def get_job(self, sp: str, job_id: str, crid: str) -> GraphResponse:
        """GET .../synchronization/jobs/{jobId}."""
        return await self.request(
            "GET", f"{self._sync(sp)}/jobs/{job_id}", client_request_id=crid, route="jobs.get"
        )

    async def start_job(self, sp: str, job_id: str, crid: str) -> GraphResponse:
        """POST .../jobs/{jobId}/start (204)."""
        return await self.request(
            "POST",
            f"{self._sync(sp)}/jobs/{job_id}/start",
            client_request_id=crid,
            route="jobs.start",
        )

    async def validate_credentials(
        self, sp: str, job_id: str, credentials: list[dict[str, str]], crid: str
    ) -> GraphResponse:
        """POST .../jobs/{jobId}/validateCredentials (204; 400 means rejected)."""
        return await self.request(
            "POST",
            f"{self._sync(sp)}/jobs/{job_id}/validateCredentials",
            json={"useSavedCredentials": False, "credentials": credentials},
            client_request_id=crid,
            route="jobs.validateCredentials",
        )

    async def put_secrets(
        self, sp: str, credentials: list[dict[str, str]], crid: str
    ) -> GraphResponse:
        """PUT .../synchronization/secrets (204)."""
        return await self.request(
            "PUT",
            f"{self._sync(sp)}/secrets",
            json={"value": credentials},
            client_request_id=crid,
            route="secrets.put",
        )


def _json(raw: bytes) -> Any:
    import json

    try:
        return json.loads(raw)
    except ValueError:
        return None


async def close_quietly(session: aiohttp.ClientSession) -> None:
    """Close the session and give the SSL transports a tick to finish (aiohttp's advice)."""
    await session.close()
    await asyncio.sleep(0.05)


Sleeper = Callable[[float], Awaitable[None]]
