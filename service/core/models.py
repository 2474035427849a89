"""The provisioning record stored in Redis and returned to callers, and what it is made of: its
state, the workflow's steps, the history entries, the error and the notification attempts.

Field names are camelCase on the wire (the API contract in the design) and snake_case in Python.
The record never holds credential values: those live encrypted under their own key (see
:mod:`service.core.store`) until the worker has saved them to Graph.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field

from service.core.errors import ERROR_CODES_TEXT
from service.core.fields import Wire as _Wire
from service.core.fields import utcnow
from service.core.request import ActionName, SmokeTestSpec
from service.core.specs import ApplicationSpec, AssignmentSpec, AttributeMappingSpec, Scope


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

    code: str = Field(description=ERROR_CODES_TEXT)
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
        "verify_ran_at",
        "verify_stopped_since",
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
    # verify (issue 11), kept across its runs: when it first read the started job running, and
    # the first of the readings since then that showed it Paused/Disabled (None: running).
    verify_ran_at: datetime | None = None
    verify_stopped_since: datetime | None = None
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

    def public_json(self) -> str:
        """:meth:`public` as JSON text, in one pass (the intake's answer)."""
        return self.model_dump_json(by_alias=True, exclude=set(_INTERNAL))

    def to_json(self) -> str:
        """Serialise for Redis."""
        return self.model_dump_json(by_alias=True)

    @classmethod
    def from_json(cls, raw: str | bytes) -> Record:
        """Parse what :meth:`to_json` stored."""
        return cls.model_validate_json(raw)
