"""Graph's gallery calls: application templates, their instantiation, service principals and
app role assignments (the onboarding of issue 13)."""

from __future__ import annotations

from urllib.parse import quote

from workers.graph.apps import (
    ApplicationServicePrincipal,
    ApplicationTemplate,
    AppRoleAssignment,
    ServicePrincipal,
    odata_string,
)
from workers.graph.response import GraphResponse
from workers.graph.transport import GraphTransport


class ApplicationCalls(GraphTransport):
    """Gallery apps, principals and app role assignments; a part of
    :class:`~workers.graph.client.GraphClient`."""

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
