"""The body of ``POST /v1/provisioning-requests``: its fields, their limits and the cross-field
rules of an action (issue 12) and of onboarding (issue 13).

Field names are camelCase on the wire (the API contract in the design) and snake_case in Python.
Credential values stay secret strings; the store encrypts them under their own key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    SecretStr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import InitErrorDetails, PydanticCustomError

from service.core.field_errors import field_errors
from service.core.field_errors import reraised as _details
from service.core.fields import (
    Guid,
    PlainText,
    SafeId,
    SecretKey,
)
from service.core.fields import Strict as _Strict
from service.core.fields import Wire as _Wire
from service.core.fields import https_only as _https
from service.core.specs import (
    ApplicationSpec,
    AssignmentSpec,
    AttributeMappingSpec,
    Scope,
    check_onboarding,
)
from service.core.text import forbidden_character


class Credential(_Wire):
    """One ``{key, value}`` pair sent to validateCredentials and PUT secrets."""

    model_config = ConfigDict(extra="forbid", strict=True)

    key: SecretKey
    value: Annotated[SecretStr, Field(min_length=1, max_length=8192)]


#: What a request asks for (issue 12); ``provision`` is the default and today's workflow.
ActionName = Literal["provision", "pause", "resume", "restart", "deprovision", "rotateCredentials"]
#: synchronizationJobRestartCriteria.resetScope flags a caller may ask for. Graph's page also lists
#: ``None`` and ``ConnectorDataStore``, both marked "DO NOT USE": intake refuses them.
RESET_SCOPES: tuple[str, ...] = ("Escrows", "Watermark", "QuarantineState", "Full", "ForceDeletes")
ResetScopeFlag = Literal["Escrows", "Watermark", "QuarantineState", "Full", "ForceDeletes"]
SMOKE_TEST_ACTIONS = frozenset({"provision", "resume", "restart"})


class SmokeTestSpec(_Strict):
    """One real user or group provisioned on demand after start (``provisionOnDemand``)."""

    subject_id: Guid
    object_type_name: Literal["User", "Group"]


def check_action(
    action: str,
    reset_scope: Sequence[str] | None,
    smoke_test: SmokeTestSpec | None,
    has_credentials: bool,
    onboarding: bool,
    sp: str | None,
    start: bool = True,
) -> list[tuple[str, str]]:
    """Cross-field rules of ``action`` (issue 12), as (field, reason) pairs."""
    problems: list[tuple[str, str]] = []
    if not start and action != "provision":
        # resume and restart are verified like a start; the others start nothing
        problems.append(("start", f"false is only allowed with action provision, not {action}"))
    if reset_scope is not None and action != "restart":
        problems.append(("resetScope", "is only allowed with action restart"))
    if reset_scope and len(reset_scope) != len(set(reset_scope)):
        problems.append(("resetScope", "names a flag twice"))
    if smoke_test is not None and action not in SMOKE_TEST_ACTIONS:
        problems.append(("smokeTest", "is only allowed with action provision, resume or restart"))
    if action == "rotateCredentials" and not has_credentials:
        problems.append(("credentials", "are required with action rotateCredentials"))
    if has_credentials and action not in {"provision", "rotateCredentials"}:
        problems.append(("credentials", f"are not allowed with action {action}"))
    if action != "provision":
        if onboarding:
            problems.append(
                ("action", f"{action} acts on an existing job: it takes no onboarding fields")
            )
        if sp is None:
            problems.append(("servicePrincipalId", f"is required with action {action}"))
    return problems


class ProvisionRequest(_Wire):
    """The body of ``POST /v1/provisioning-requests``; unknown fields are rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=False, extra="forbid", strict=True
    )

    service_principal_id: Guid | None = None  # or ``application`` (issue 13)
    template_id: SafeId | None = None
    credentials: Annotated[list[Credential], Field(max_length=20)] | None = None
    start: bool = True
    callback_url: (
        Annotated[str, StringConstraints(max_length=2048), AfterValidator(_https)] | None
    ) = None
    external_reference: (
        Annotated[PlainText, StringConstraints(min_length=1, max_length=256)] | None
    ) = None
    metadata: Annotated[
        dict[str, Annotated[PlainText, Field(max_length=256)]], Field(max_length=20)
    ] = Field(default_factory=dict)

    application: ApplicationSpec | None = Field(
        default=None,
        description="Instead of servicePrincipalId: the gallery app to create, or adopt when a "
        "principal made from the same template with the same display name exists (step "
        "instantiate_app; needs Application.ReadWrite.OwnedBy, Application.ReadWrite.All or "
        "Directory.ReadWrite.All).",
    )
    assignments: Annotated[list[AssignmentSpec], Field(max_length=50)] | None = Field(
        default=None,
        description="Users and groups to assign to the app; only the missing ones are added, "
        "none is removed (step assign; needs AppRoleAssignment.ReadWrite.All and "
        "Application.Read.All or Directory.Read.All).",
    )
    scope: Scope | None = Field(  # the SyncAll secret
        default=None,
        description="Who is provisioned, written as the SyncAll secret with the credentials: "
        "`assigned` (the default for an app named by `application`) or `all`; left as it is "
        "when omitted for a servicePrincipalId.",
    )
    attribute_mappings: Annotated[list[AttributeMappingSpec], Field(max_length=100)] | None = Field(
        default=None,
        description="Attribute mappings to set or remove in the job's schema; the schema "
        "is PUT back only when one changes (step map_attributes; Graph's 400 is "
        "SchemaRejected).",
    )
    # lifecycle actions (issue 12)
    action: ActionName = "provision"
    reset_scope: Annotated[list[ResetScopeFlag], Field(max_length=5)] | None = None
    smoke_test: SmokeTestSpec | None = None

    @model_validator(mode="wrap")
    @classmethod
    def _target_named(cls, data: Any, handler: ModelWrapValidatorHandler[ProvisionRequest]) -> Any:
        """Report a missing target with the other errors, not only once they are fixed."""
        try:
            return handler(data)
        except ValidationError as e:
            named = isinstance(data, dict) and ({"servicePrincipalId", "application"} & set(data))
            if named or not isinstance(data, dict):
                raise
            missing = InitErrorDetails(
                type=PydanticCustomError("missing", "Field required"),
                loc=("servicePrincipalId",),
                input=data,
            )
            errors = [missing, *(_details(d) for d in e.errors())]
            raise ValidationError.from_exception_data(cls.__name__, errors) from None

    @model_validator(mode="after")
    def _onboarding(self) -> ProvisionRequest:
        keys = [c.key for c in self.credentials or []]
        problems = check_onboarding(
            self.service_principal_id,
            self.application,
            self.assignments,
            self.attribute_mappings,
            keys,
            self.scope,
        )
        onboarding = any((self.application, self.assignments, self.scope, self.attribute_mappings))
        problems += check_action(
            self.action,
            self.reset_scope,
            self.smoke_test,
            bool(self.credentials),
            onboarding,
            self.service_principal_id,
            self.start,
        )
        if problems:
            raise field_errors(type(self).__name__, problems, None)
        return self

    @field_validator("credentials")
    @classmethod
    def _unique_keys(cls, value: list[Credential] | None) -> list[Credential] | None:
        if value:
            keys = [c.key for c in value]
            dupes = sorted({k for k in keys if keys.count(k) > 1})
            if dupes:
                raise ValueError(f"duplicate credential keys: {', '.join(dupes)}")
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not 1 <= len(key) <= 64:
                raise ValueError("metadata keys must be 1-64 characters")
            if forbidden_character(key) is not None:
                raise ValueError(
                    "metadata keys must not contain control or bidirectional characters"
                )
        return value

    def fingerprint_payload(self) -> dict[str, Any]:
        """The body as a canonical dict for Idempotency-Key comparison (hashed before storing)."""
        data = self.model_dump(by_alias=True, mode="json")
        # Fields of issue 12 at their defaults leave the fingerprint of older bodies unchanged.
        for name, default in (("action", "provision"), ("resetScope", None), ("smokeTest", None)):
            if data.get(name) == default:
                data.pop(name, None)
        if self.credentials is not None:
            data["credentials"] = [
                {"key": c.key, "value": c.value.get_secret_value()} for c in self.credentials
            ]
        return data
