"""The Microsoft Graph client: one ``aiohttp.ClientSession``, typed answers, one error family.

Every answer is parsed once, here, into the models of :mod:`workers.graph.models`; a call that
fails raises a :class:`~service.core.errors.GraphFailure`: a
:class:`~service.core.errors.GraphError` for a non-2xx answer (Graph's status, error code,
message, ``request-id`` and parsed ``Retry-After``) or a 2xx body that does not parse, a
:class:`~service.core.errors.GraphTransportError` when no answer came. Retrying is the caller's
business (the policy lives in :mod:`workers.workflow.retry`), with one exception that belongs to
authentication: a 401 ``InvalidAuthenticationToken`` drops the cached token and repeats the
call once. The client knows nothing of the workflow.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote, urljoin

import aiohttp
from pydantic import BaseModel, ValidationError

from service.core.errors import GraphError, GraphTransportError
from service.core.settings import Settings
from workers.graph.apps import (
    ApplicationServicePrincipal,
    ApplicationTemplate,
    AppRoleAssignment,
    ServicePrincipal,
    odata_string,
)
from workers.graph.models import (
    Collection,
    ODataError,
    SynchronizationJob,
    SynchronizationTemplate,
)
from workers.graph.ondemand import OnDemandAnswer, OnDemandResult, parse_answer
from workers.graph.schema import SchemaDocument, SynchronizationSchema
from workers.graph.tls import ssl_context
from workers.graph.token import TokenProvider
from workers.workflow.retry import parse_retry_after

CallObserver = Callable[[str, str, int], None]  # (method, route, status) -> None; 0 = no answer
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class GraphResponse(Generic[T]):
    """A 2xx answer: its status, the parsed value and the ids to quote."""

    status: int
    value: T
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
        parsed = _loads(raw) if raw and is_json else None
        if 200 <= status < 300:
            return GraphResponse(status, parsed, request_id, crid, usage)
        err = ODataError.parse(parsed)
        inner_request_id = err.inner_error.request_id if err.inner_error else None
        raise GraphError(
            status,
            err.code or f"HTTP{status}",
            err.message or "",
            request_id or inner_request_id,
            parse_retry_after(retry_after),
            client_request_id=crid,
            method=method,
            url=url,
        )

    def _note(self, method: str, route: str, status: int) -> None:
        if self._observe is not None:
            self._observe(method, route, status)

    async def _typed(
        self, model: type[M], method: str, url: str, crid: str, route: str, json: Any = None
    ) -> GraphResponse[M]:
        resp = await self.request(method, url, client_request_id=crid, json=json, route=route)
        value = _parse(model, resp, method, url)
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
            items.extend(_parse_item(model, raw, page, url) for raw in page.value.value)
            next_link = page.value.next_link
            # An opaque URL, normally absolute; resolved against the base should one be relative.
            url = urljoin(f"{self._base}/", next_link) if next_link else None
        assert page is not None
        return GraphResponse(
            page.status, items, page.request_id, client_request_id, page.throttle_usage
        )

    # Graph's synchronization endpoints ---------------------------------------------------
    @staticmethod
    def _sync(sp: str) -> str:
        return f"/servicePrincipals/{sp}/synchronization"

    async def list_templates(
        self, sp: str, crid: str
    ) -> GraphResponse[list[SynchronizationTemplate]]:
        """GET .../synchronization/templates, all pages."""
        return await self.list_all(
            SynchronizationTemplate,
            f"{self._sync(sp)}/templates",
            client_request_id=crid,
            route="templates.list",
        )

    async def list_jobs(self, sp: str, crid: str) -> GraphResponse[list[SynchronizationJob]]:
        """GET .../synchronization/jobs, all pages."""
        return await self.list_all(
            SynchronizationJob, f"{self._sync(sp)}/jobs", client_request_id=crid, route="jobs.list"
        )

    async def create_job(
        self, sp: str, template_id: str, crid: str
    ) -> GraphResponse[SynchronizationJob]:
        """POST .../synchronization/jobs: not idempotent, the caller lists jobs first."""
        return await self._typed(
            SynchronizationJob,
            "POST",
            f"{self._sync(sp)}/jobs",
            crid,
            "jobs.create",
            json={"templateId": template_id},
        )

    async def get_job(self, sp: str, job_id: str, crid: str) -> GraphResponse[SynchronizationJob]:
        """GET .../synchronization/jobs/{jobId}."""
        return await self._typed(
            SynchronizationJob, "GET", f"{self._sync(sp)}/jobs/{job_id}", crid, "jobs.get"
        )

    async def start_job(self, sp: str, job_id: str, crid: str) -> GraphResponse[None]:
        """POST .../jobs/{jobId}/start (204)."""
        return await self._no_content(
            "POST", f"{self._sync(sp)}/jobs/{job_id}/start", crid, "jobs.start"
        )

    async def validate_credentials(
        self, sp: str, job_id: str, credentials: list[dict[str, str]], crid: str
    ) -> GraphResponse[None]:
        """POST .../jobs/{jobId}/validateCredentials (204; 400 means rejected)."""
        return await self._no_content(
            "POST",
            f"{self._sync(sp)}/jobs/{job_id}/validateCredentials",
            crid,
            "jobs.validateCredentials",
            json={"useSavedCredentials": False, "credentials": credentials},
        )

    async def put_secrets(
        self, sp: str, credentials: list[dict[str, str]], crid: str
    ) -> GraphResponse[None]:
        """PUT .../synchronization/secrets (204)."""
        return await self._no_content(
            "PUT", f"{self._sync(sp)}/secrets", crid, "secrets.put", json={"value": credentials}
        )

    # Gallery apps, principals, app role assignments and schemas (issue 13) ---------------
    async def find_application_templates(
        self, odata_filter: str, crid: str
    ) -> GraphResponse[list[ApplicationTemplate]]:
        """GET /applicationTemplates?$filter=..., all pages (``$filter`` works on displayName
        and categories only; literals quoted with :func:`~workers.graph.apps.odata_string`)."""
        query = quote(odata_filter, safe="")
        return await self.list_all(
            ApplicationTemplate,
            f"/applicationTemplates?$filter={query}",
            client_request_id=crid,
            route="applicationTemplates.list",
        )

    async def instantiate(
        self, template_id: str, display_name: str, crid: str
    ) -> GraphResponse[ApplicationServicePrincipal]:
        """POST /applicationTemplates/{id}/instantiate: not idempotent, list principals first."""
        return await self._typed(
            ApplicationServicePrincipal,
            "POST",
            f"/applicationTemplates/{quote(template_id, safe='')}/instantiate",
            crid,
            "applicationTemplates.instantiate",
            json={"displayName": display_name},
        )

    async def find_service_principals(
        self, template_id: str, crid: str
    ) -> GraphResponse[list[ServicePrincipal]]:
        """GET /servicePrincipals?$filter=applicationTemplateId eq '...', all pages."""
        query = quote(f"applicationTemplateId eq {odata_string(template_id)}", safe="")
        return await self.list_all(
            ServicePrincipal,
            f"/servicePrincipals?$filter={query}",
            client_request_id=crid,
            route="servicePrincipals.list",
        )

    async def get_service_principal(self, sp: str, crid: str) -> GraphResponse[ServicePrincipal]:
        """GET /servicePrincipals/{id} (404 while a new one replicates)."""
        return await self._typed(
            ServicePrincipal, "GET", f"/servicePrincipals/{sp}", crid, "servicePrincipals.get"
        )

    async def list_app_role_assignments(
        self, sp: str, crid: str
    ) -> GraphResponse[list[AppRoleAssignment]]:
        """GET /servicePrincipals/{id}/appRoleAssignedTo, all pages."""
        return await self.list_all(
            AppRoleAssignment,
            f"/servicePrincipals/{sp}/appRoleAssignedTo",
            client_request_id=crid,
            route="appRoleAssignedTo.list",
        )

    async def add_app_role_assignment(
        self, sp: str, principal_id: str, app_role_id: str, crid: str
    ) -> GraphResponse[AppRoleAssignment]:
        """POST /servicePrincipals/{id}/appRoleAssignedTo (201)."""
        body = {"principalId": principal_id, "resourceId": sp, "appRoleId": app_role_id}
        return await self._typed(
            AppRoleAssignment,
            "POST",
            f"/servicePrincipals/{sp}/appRoleAssignedTo",
            crid,
            "appRoleAssignedTo.add",
            json=body,
        )

    async def get_job_schema(
        self, sp: str, job_id: str, crid: str
    ) -> GraphResponse[SchemaDocument]:
        """GET .../jobs/{jobId}/schema: the raw document (a PUT sends it back whole)."""
        url = f"{self._sync(sp)}/jobs/{job_id}/schema"
        resp = await self.request("GET", url, client_request_id=crid, route="schema.get")
        typed = _parse(SynchronizationSchema, resp, "GET", url)
        raw = resp.value if isinstance(resp.value, dict) else {}
        raw = {k: v for k, v in raw.items() if not k.startswith("@odata.")}
        return GraphResponse(resp.status, SchemaDocument(raw, typed), resp.request_id, crid)

    async def put_job_schema(
        self, sp: str, job_id: str, raw: dict[str, Any], crid: str
    ) -> GraphResponse[None]:
        """PUT .../jobs/{jobId}/schema (204): replaces the whole schema."""
        return await self._no_content(
            "PUT", f"{self._sync(sp)}/jobs/{job_id}/schema", crid, "schema.put", json=raw
        )

    # Lifecycle actions (issue 12): pause, restart, delete and provisionOnDemand ----------
    async def pause_job(self, sp: str, job_id: str, crid: str) -> GraphResponse[None]:
        """POST .../jobs/{jobId}/pause (204)."""
        return await self._no_content(
            "POST", f"{self._sync(sp)}/jobs/{job_id}/pause", crid, "jobs.pause"
        )

    async def restart_job(
        self, sp: str, job_id: str, reset_scope: str, crid: str
    ) -> GraphResponse[None]:
        """POST .../jobs/{jobId}/restart with ``{"criteria": {"resetScope": ...}}`` (204)."""
        return await self._no_content(
            "POST",
            f"{self._sync(sp)}/jobs/{job_id}/restart",
            crid,
            "jobs.restart",
            json={"criteria": {"resetScope": reset_scope}},
        )

    async def delete_job(self, sp: str, job_id: str, crid: str) -> GraphResponse[None]:
        """DELETE .../jobs/{jobId} (204; 404 once it is gone)."""
        return await self._no_content(
            "DELETE", f"{self._sync(sp)}/jobs/{job_id}", crid, "jobs.delete"
        )

    async def provision_on_demand(
        self, sp: str, job_id: str, rule_id: str, subject: dict[str, str], crid: str
    ) -> GraphResponse[OnDemandResult]:
        """POST .../jobs/{jobId}/provisionOnDemand (200 with a stringKeyStringValuePair whose
        strings hold JSON, parsed by :func:`workers.graph.ondemand.parse_answer`)."""
        url = f"{self._sync(sp)}/jobs/{job_id}/provisionOnDemand"
        body = {"parameters": [{"subjects": [subject], "ruleId": rule_id}]}
        answer = await self._typed(
            OnDemandAnswer, "POST", url, crid, "jobs.provisionOnDemand", body
        )
        try:
            result = parse_answer(answer.value)
        except ValueError as e:
            raise GraphError(
                answer.status,
                "MalformedResponse",
                f"the answer is not a provisionOnDemand result: {e}",
                answer.request_id,
                client_request_id=crid,
                method="POST",
                url=url,
            ) from None
        return GraphResponse(answer.status, result, answer.request_id, crid)


def _parse(model: type[M], resp: GraphResponse[Any], method: str, url: str) -> M:
    """The answer's body as ``model``; a body that does not fit is Graph's error, not ours."""
    try:
        return model.model_validate(resp.value if resp.value is not None else {})
    except ValidationError as e:
        raise _malformed(resp, method, url, model, e) from None


def _parse_item(model: type[M], raw: dict[str, Any], page: GraphResponse[Any], url: str) -> M:
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        raise _malformed(page, "GET", url, model, e) from None


def _malformed(
    resp: GraphResponse[Any], method: str, url: str, model: type[BaseModel], e: ValidationError
) -> GraphError:
    first = e.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    return GraphError(
        resp.status,
        "MalformedResponse",
        f"the answer is not a {model.__name__}: {where}: {first['msg']}",
        resp.request_id,
        client_request_id=resp.client_request_id,
        method=method,
        url=url,
    )


def _loads(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


async def close_quietly(session: aiohttp.ClientSession) -> None:
    """Close the session and give the SSL transports a tick to finish (aiohttp's advice)."""
    await session.close()
    await asyncio.sleep(0.05)


Sleeper = Callable[[float], Awaitable[None]]
