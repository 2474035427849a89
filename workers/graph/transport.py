"""The call to Graph under the client: one ``aiohttp.ClientSession``, the token, the answer typed.

A call that fails raises a :class:`~service.core.errors.GraphFailure`: a
:class:`~service.core.errors.GraphError` for a non-2xx answer or a 2xx body that does not parse
(:mod:`workers.graph.response`), a :class:`~service.core.errors.GraphTransportError` when no
answer came. Retrying is the caller's business, with one exception that belongs to
authentication: a 401 ``InvalidAuthenticationToken`` drops the cached token and repeats the
call once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urljoin

import aiohttp
from pydantic import BaseModel

from service.core.errors import GraphError, GraphTransportError
from workers.graph.models import Collection
from workers.graph.response import GraphResponse, error_answer, loads, parse, parse_item
from workers.graph.token import TokenProvider

CallObserver = Callable[[str, str, int], None]  # (method, route, status) -> None; 0 = no answer
M = TypeVar("M", bound=BaseModel)


class GraphTransport:
    """One tenant's session and token: a call, its answer typed, a collection's pages; the
    base of :class:`~workers.graph.client.GraphClient`."""

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

    async def token_roles(self) -> tuple[str, ...] | None:
        """The ``roles`` of the access token the calls carry (None: not readable)."""
        return await self._tokens.roles()

    async def refresh_token(self) -> None:
        """Fetch a new token on the next call (roles granted since show up in it)."""
        await self._tokens.refresh()

    async def request(
        self,
        method: str,
        url: str,
        *,
        client_request_id: str,
        json: Any = None,
        route: str = "",
    ) -> GraphResponse[Any]:
        """One call, its body as parsed JSON (None when empty); ``url`` is a path under the
        Graph base URL or an absolute nextLink."""
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
    ) -> GraphResponse[Any]:
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
            raise GraphTransportError(method, url, type(e).__name__, crid) from e
        self._note(method, route, status)
        parsed = loads(raw) if raw and is_json else None
        if 200 <= status < 300:
            return GraphResponse(status, parsed, request_id, crid, usage)
        raise error_answer(status, parsed, request_id, retry_after, crid, method, url)

    def _note(self, method: str, route: str, status: int) -> None:
        if self._observe is not None:
            self._observe(method, route, status)

    async def _typed(
        self, model: type[M], method: str, url: str, crid: str, route: str, json: Any = None
    ) -> GraphResponse[M]:
        resp = await self.request(method, url, client_request_id=crid, json=json, route=route)
        value = parse(model, resp, method, url)
        return GraphResponse(resp.status, value, resp.request_id, crid, resp.throttle_usage)

    async def _no_content(
        self, method: str, url: str, crid: str, route: str, json: Any = None
    ) -> GraphResponse[None]:
        resp = await self.request(method, url, client_request_id=crid, json=json, route=route)
        return GraphResponse(resp.status, None, resp.request_id, crid, resp.throttle_usage)

    async def list_all(
        self, model: type[M], path: str, *, client_request_id: str, route: str
    ) -> GraphResponse[list[M]]:
        """Every item of a collection, following ``@odata.nextLink`` as an opaque URL; the
        status and ids are the last page's."""
        items: list[M] = []
        url: str | None = path
        page: GraphResponse[Collection] | None = None
        while url:
            page = await self._typed(Collection, "GET", url, client_request_id, route)
            items.extend(parse_item(model, raw, page, url) for raw in page.value.value)
            next_link = page.value.next_link
            # An opaque URL, normally absolute; resolved against the base should one be relative.
            url = urljoin(f"{self._base}/", next_link) if next_link else None
        assert page is not None
        return GraphResponse(
            page.status, items, page.request_id, client_request_id, page.throttle_usage
        )
