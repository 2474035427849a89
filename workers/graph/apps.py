"""Graph's application resources, as typed models: gallery templates, service principals, app
roles and app role assignments (issue 13's onboarding steps read these).

Same conventions as :mod:`workers.graph.models`: camelCase on the wire, every field optional,
unknown fields ignored. References: applicationTemplate, applicationTemplate: instantiate,
servicePrincipal, appRole, appRoleAssignment, servicePrincipal: list/post appRoleAssignedTo.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from workers.graph.models import GraphModel

#: "If the resource application has not declared any app roles, a default app role ID of
#: 00000000-0000-0000-0000-000000000000 can be specified" (REF v1.0-approleassignment.md).
DEFAULT_ACCESS_ROLE = "00000000-0000-0000-0000-000000000000"


class ApplicationTemplate(GraphModel):
    """An app in the Entra gallery; ``supportedProvisioningTypes`` lists ``sync`` when it
    can be provisioned."""

    id: str | None = None
    display_name: str | None = None
    publisher: str | None = None
    categories: list[str] = Field(default_factory=list)
    supported_provisioning_types: list[str] = Field(default_factory=list)
    supported_single_sign_on_modes: list[str] = Field(default_factory=list)

    @property
    def provisionable(self) -> bool:
        return "sync" in self.supported_provisioning_types


class AppRole(GraphModel):
    """A role an application declares; ``allowedMemberTypes`` says who may hold it."""

    id: str | None = None
    display_name: str | None = None
    value: str | None = None
    description: str | None = None
    is_enabled: bool = True
    allowed_member_types: list[str] = Field(default_factory=list)
    origin: str | None = None


class ServicePrincipal(GraphModel):
    """A service principal (the enterprise app); the synchronization API is under its ``id``."""

    id: str | None = None
    app_id: str | None = None
    display_name: str | None = None
    application_template_id: str | None = None
    app_role_assignment_required: bool | None = None
    app_roles: list[AppRole] = Field(default_factory=list)
    created_date_time: datetime | None = None


class Application(GraphModel):
    """The application object made alongside the principal."""

    id: str | None = None
    app_id: str | None = None
    display_name: str | None = None
    application_template_id: str | None = None


class ApplicationServicePrincipal(GraphModel):
    """What ``POST /applicationTemplates/{id}/instantiate`` answers (201)."""

    application: Application = Field(default_factory=Application)
    service_principal: ServicePrincipal = Field(default_factory=ServicePrincipal)


class AppRoleAssignment(GraphModel):
    """One principal (user, group, service principal) holding one app role of a resource."""

    id: str | None = None
    app_role_id: str | None = None
    principal_id: str | None = None
    principal_type: str | None = None
    principal_display_name: str | None = None
    resource_id: str | None = None
    resource_display_name: str | None = None
    created_date_time: datetime | None = None


def default_user_role(roles: list[AppRole]) -> str | None:
    """The role an assignment without ``appRoleId`` gets, or None when it is ambiguous.

    Graph: a role id must be one of the principal's ``appRoles``; the zero GUID (default
    access) only when it declares none. Among the enabled roles users may hold: the one named
    ``User`` (value or display name) when there is one, else the only one (a gallery app's
    ``msiam_access``); with none at all, the default access role."""
    usable = [r for r in roles if r.id and r.is_enabled and "User" in r.allowed_member_types]
    if not [r for r in roles if r.is_enabled]:
        return DEFAULT_ACCESS_ROLE
    named = [
        r for r in usable if "user" in {(r.value or "").lower(), (r.display_name or "").lower()}
    ]
    if len(named) == 1:
        return named[0].id
    if len(usable) == 1:
        return usable[0].id
    return None


def _is_user_role(role: AppRole) -> bool:
    return "user" in {(role.value or "").lower(), (role.display_name or "").lower()}


def odata_string(value: str) -> str:
    """An OData string literal: single-quoted, a quote inside doubled (``O'Neil`` ->
    ``'O''Neil'``)."""
    return "'" + value.replace("'", "''") + "'"
