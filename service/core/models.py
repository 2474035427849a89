"""The API's request body and the provisioning record stored in Redis and returned to callers.

Field names are camelCase on the wire (the API contract in the design) and snake_case in Python.
The record never holds credential values: those live encrypted under their own key (see
:mod:`service.core.store`) until the worker has saved them to Graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
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
from service.core.fields import _NAME as _NAME
from service.core.fields import _SAFE_ID as _SAFE_ID
from service.core.fields import (
    DEFAULT_APP_ROLE,
    DisplayName,
    Guid,
    PlainText,
    SafeId,
    SecretKey,
    utcnow,
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

# The field types, the onboarding specs and the error helpers live in their own modules;
# every name stays importable from here (and the private ones usable by models added here).
__all__ = [
    "DEFAULT_APP_ROLE",
    "DONE_OUTCOMES",
    "STEPS",
    "ApplicationSpec",
    "AssignmentSpec",
    "AttributeMappingSpec",
    "CallbackAttempt",
    "Credential",
    "DisplayName",
    "ErrorInfo",
    "Guid",
    "HistoryEntry",
    "Outcome",
    "PlainText",
    "ProvisionRequest",
    "Record",
    "SafeId",
    "Scope",
    "SecretKey",
    "State",
    "Step",
    "check_onboarding",
    "field_errors",
    "utcnow",
]


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

    application: ApplicationSpec | None = None
    assignments: Annotated[list[AssignmentSpec], Field(max_length=50)] | None = None
    scope: Scope | None = None  # "assigned" (the default) or "all": the SyncAll secret
    attribute_mappings: Annotated[list[AttributeMappingSpec], Field(max_length=100)] | None = None
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


class State(StrEnum):
    """Where a request stands; the last three are terminal."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """True for succeeded, failed and cancelled."""
        return self in {State.SUCCEEDED, State.FAILED, State.CANCELLED}


class Step(StrEnum):
    """The workflow's steps, in order."""

    INSTANTIATE_APP = "instantiate_app"
    ASSIGN = "assign"
    RESOLVE_TEMPLATE = "resolve_template"
    CREATE_JOB = "create_job"
    SAVE_SECRETS = "save_secrets"
    MAP_ATTRIBUTES = "map_attributes"
    START_JOB = "start_job"
    VERIFY = "verify"
    # lifecycle actions (issue 12): the sequence of each action is in service.core.actions
    FIND_JOB = "find_job"
    PAUSE_JOB = "pause_job"
    RESTART_JOB = "restart_job"
    DELETE_JOB = "delete_job"
    LIFT_QUARANTINE = "lift_quarantine"
    SMOKE_TEST = "smoke_test"


STEPS: tuple[Step, ...] = tuple(Step)


class Outcome(StrEnum):
    """What one history entry says happened."""

    SUCCEEDED = "succeeded"
    ADOPTED = "adopted"
    SKIPPED = "skipped"
    RETRYING = "retrying"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REQUEUED = "requeued"


DONE_OUTCOMES = frozenset({Outcome.SUCCEEDED, Outcome.ADOPTED, Outcome.SKIPPED})


class HistoryEntry(_Wire):
    """One step outcome, with what support needs to quote to Microsoft."""

    step: Step | None
    outcome: Outcome
    at: datetime
    attempt: int = 0
    duration_ms: int | None = None
    graph_status: int | None = None
    graph_request_id: str | None = None
    client_request_id: str | None = None
    message: str | None = None


class ErrorInfo(_Wire):
    """Why a request failed: a stable code, a human message and Graph's status and request-id."""

    code: str
    message: str
    graph_status: int | None = None
    graph_request_id: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class CallbackAttempt(_Wire):
    """One attempt to tell about the ended request: the callback or a ticket write-back."""

    at: datetime
    attempt: int
    target: str = "callbackUrl"  # or the ticket system written back to: jira, servicenow
    status: int | None = None  # the receiver's HTTP status; None when it gave no answer
    error: str | None = None
    delivered: bool = False
    #: Not sent at all (``error`` says why, e.g. no callback secret for the caller).
    skipped: bool = False


class SmokeTestStep(_Wire):
    """One step of a provisionOnDemand answer, as Graph names it."""

    name: str | None = None
    type: str | None = None
    status: str | None = None
    description: str | None = None


class SmokeTestResult(_Wire):
    """What the smoke test's provisionOnDemand reported (issue 12)."""

    subject_id: str
    object_type_name: str
    rule_id: str
    result: str | None = None  # Graph's ``key.result``: Success, Failure, ...
    action: str | None = None  # Create, Update, ... (the answer's ``action``)
    succeeded: bool
    steps: list[SmokeTestStep] = Field(default_factory=list)
    reason: str | None = None  # Graph's words for the failing step


# The worker's bookkeeping, and intake's: the body's keyed fingerprint (a second POST for the
# in-flight app is only the same request when it matches) and the request it waits behind.
_INTERNAL = frozenset(
    {
        "retry_until",
        "lag_since",
        "create_sent_at",
        "request_fingerprint",
        "queued_behind",
        "instantiate_sent_at",
        "instantiated_at",
        "smoke_rule_id",
        "cycles_seen",
    }
)


class Record(_Wire):
    """A provisioning request as stored in Redis and returned by the API."""

    id: str
    state: State = State.QUEUED
    step: Step | None = None
    service_principal_id: str
    template_id: str | None = None
    requested_template_id: str | None = None
    job_id: str | None = None
    start: bool = True
    has_credentials: bool = False
    callback_url: str | None = None
    external_reference: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    caller: str = ""
    attempts: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    retry_until: datetime | None = None
    lag_since: datetime | None = None
    create_sent_at: datetime | None = None  # a create POST whose answer is not recorded yet
    request_fingerprint: str | None = None  # HMAC of the request body (never the body itself)
    queued_behind: str | None = None  # another caller's in-flight request this one waits for
    # onboarding (issue 13); service_principal_id stays "" until instantiate_app records it
    application: ApplicationSpec | None = None
    application_template_id: str | None = None  # the gallery template, once resolved
    assignments: list[AssignmentSpec] = Field(default_factory=list)
    scope: Scope | None = None
    attribute_mappings: list[AttributeMappingSpec] = Field(default_factory=list)
    assignments_made: list[str] = Field(default_factory=list)  # ids this service created
    instantiate_sent_at: datetime | None = None  # an instantiate POST not answered yet
    instantiated_at: datetime | None = None  # when the new principal's id became known
    # lifecycle actions (issue 12)
    action: ActionName = "provision"
    reset_scope: list[str] | None = None
    smoke_test: SmokeTestSpec | None = None
    smoke_rule_id: str | None = None  # the synchronization rule the smoke test uses
    smoke_test_result: SmokeTestResult | None = None
    # verify (issue 12): per step that (re)starts the job, the ``timeBegan`` of the last cycle
    # Graph showed right before its POST (year 1: none). Cycles that began then or earlier are
    # not this start's (workers.graph.health); the first run's reading is kept.
    cycles_seen: dict[str, datetime] = Field(default_factory=dict)
    history: list[HistoryEntry] = Field(default_factory=list)
    error: ErrorInfo | None = None
    callbacks: list[CallbackAttempt] = Field(default_factory=list)

    def done(self, step: Step) -> bool:
        """True when ``step`` has a completed outcome in the history (resume skips it)."""
        return any(h.step == step and h.outcome in DONE_OUTCOMES for h in self.history)

    def add(self, entry: HistoryEntry) -> None:
        """Append a history entry and move ``updatedAt``."""
        self.history.append(entry)
        self.updated_at = entry.at

    def public(self) -> dict[str, Any]:
        """The record as the API returns it (camelCase, JSON types, no internal fields)."""
        return self.model_dump(by_alias=True, mode="json", exclude=set(_INTERNAL))

    def to_json(self) -> str:
        """Serialise for Redis."""
        return self.model_dump_json(by_alias=True)

    @classmethod
    def from_json(cls, raw: str | bytes) -> Record:
        """Parse what :meth:`to_json` stored."""
        return cls.model_validate_json(raw)
