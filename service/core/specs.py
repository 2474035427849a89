"""The onboarding parts of a provisioning request (issue 13): the gallery application to
create or adopt, the assignments, the attribute mappings and the scope, and the rules that
span them (:func:`check_onboarding`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from service.core.fields import DisplayName, Guid, Strict

__all__ = [
    "ApplicationSpec",
    "AssignmentSpec",
    "AttributeMappingSpec",
    "Scope",
    "check_onboarding",
]


class ApplicationSpec(Strict):
    """A gallery application to create (or adopt): by template id or by its gallery name."""

    application_template_id: Guid | None = None
    gallery_name: DisplayName | None = Field(
        default=None,
        description="Looked up with GET /applicationTemplates?$filter=displayName eq '...' "
        "(provisionable templates only); none or several fail GalleryAppNotFound / "
        "GalleryAppAmbiguous listing the candidates.",
    )
    display_name: DisplayName

    @model_validator(mode="after")
    def _one_template(self) -> ApplicationSpec:
        if (self.application_template_id is None) == (self.gallery_name is None):
            raise ValueError("name exactly one of applicationTemplateId and galleryName")
        return self


class AssignmentSpec(Strict):
    """A user, group or service principal to assign to the app (appRoleAssignedTo)."""

    principal_id: Guid
    app_role_id: Guid | None = Field(  # None: the app's default user role (docs/workflow.md)
        default=None,
        description="Omitted: the app's role named User, else its only user role, else the "
        "default access role 00000000-0000-0000-0000-000000000000 when it declares none.",
    )


class AttributeMappingSpec(Strict):
    """One attribute mapping of one object mapping to set (``source``) or drop (``remove``)."""

    object_mapping: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    target: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    source: Annotated[str, StringConstraints(min_length=1, max_length=10_000)] | None = None
    remove: bool = False

    @model_validator(mode="after")
    def _set_or_remove(self) -> AttributeMappingSpec:
        if (self.source is None) != self.remove:
            raise ValueError('give either "source" or "remove": true')
        return self


Scope = Literal["assigned", "all"]


def check_onboarding(
    sp: str | None,
    application: ApplicationSpec | None,
    assignments: list[AssignmentSpec] | None,
    mappings: list[AttributeMappingSpec] | None,
    credential_keys: list[str],
    scope: str | None,
) -> list[tuple[str, str]]:
    """Cross-field rules of the onboarding fields (issue 13), as (field, reason) pairs."""
    problems: list[tuple[str, str]] = []
    if sp is None and application is None:
        problems.append(("servicePrincipalId", "is required unless application is given"))
    if sp is not None and application is not None:
        problems.append(("application", "cannot be combined with servicePrincipalId"))
    pairs = [(a.principal_id, a.app_role_id) for a in assignments or []]
    if len(pairs) != len(set(pairs)):
        problems.append(("assignments", "names the same principalId and appRoleId twice"))
    targets = [(m.object_mapping, m.target.lower()) for m in mappings or []]
    if len(targets) != len(set(targets)):
        problems.append(("attributeMappings", "names the same objectMapping and target twice"))
    if scope is not None and "SyncAll" in credential_keys:
        problems.append(("credentials", "must not hold SyncAll when scope is given"))
    return problems
