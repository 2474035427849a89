"""The Microsoft Graph client: one ``aiohttp.ClientSession``, typed answers, one error family.

Every answer is parsed once into the models of :mod:`workers.graph.models` (the call, its
errors and the token refresh on a 401 are in :mod:`workers.graph.transport`; the gallery calls
in :mod:`workers.graph.app_calls`). This module holds the synchronization calls: jobs, their
templates, secrets, schema and lifecycle actions. The client knows nothing of the workflow.
"""

from __future__ import annotations

from typing import Any

from service.core.errors import GraphError
from workers.graph.app_calls import ApplicationCalls
from workers.graph.models import SynchronizationJob, SynchronizationTemplate
from workers.graph.ondemand import OnDemandAnswer, OnDemandResult, parse_answer
from workers.graph.response import GraphResponse, parse
from workers.graph.schema import SchemaDocument, SynchronizationSchema


class GraphClient(ApplicationCalls):
    """Calls Graph for one tenant over one session (the call itself:
    :class:`~workers.graph.transport.GraphTransport`)."""

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

    async def get_job_schema(
        self, sp: str, job_id: str, crid: str
    ) -> GraphResponse[SchemaDocument]:
        """GET .../jobs/{jobId}/schema: the raw document (a PUT sends it back whole)."""
        url = f"{self._sync(sp)}/jobs/{job_id}/schema"
        resp = await self.request("GET", url, client_request_id=crid, route="schema.get")
        typed = parse(SynchronizationSchema, resp, "GET", url)
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
