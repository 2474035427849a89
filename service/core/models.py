"""The API's request body and the provisioning record stored in Redis and returned to callers.

Field names are camelCase on the wire (the API contract in the design) and snake_case in Python.
The record never holds credential values: those live encrypted under their own key (see
:mod:`service.core.store`) until the worker has saved them to Graph.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    WithJsonSchema,
    field_validator,
)
from pydantic.alias_generators import to_camel

from service.core.text import (
    GUID_PATTERN,
    SECRET_KEYS,
    canonical_guid,
    check_plain_text,
    check_secret_key,
    forbidden_character,
)

_SAFE_ID = r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$"


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (every stored timestamp uses it)."""
    return datetime.now(UTC)


def _https(value: str) -> str:
    if not re.match(r"^https://[^/\s?#]+", value):
        raise ValueError("must be an https:// URL")
    return value


Guid = Annotated[
    str,
    StringConstraints(strict=True),
    AfterValidator(canonical_guid),
    WithJsonSchema({"type": "string", "format": "uuid", "pattern": GUID_PATTERN}),
]
SafeId = Annotated[str, StringConstraints(strict=True, pattern=_SAFE_ID)]
#: Free text a person reads (ticket ids, metadata): no control or bidi characters.
PlainText = Annotated[str, AfterValidator(check_plain_text)]
SecretKey = Annotated[
    str,
    StringConstraints(strict=True),
    AfterValidator(check_secret_key),
    WithJsonSchema(
        {
            "type": "string",
            "enum": list(SECRET_KEYS),
            "description": "A synchronizationSecret name as Graph documents it (case-sensitive).",
        }
    ),
]


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class Credential(_Wire):
    """One ``{key, value}`` pair sent to validateCredentials and PUT secrets."""

    model_config = ConfigDict(extra="forbid", strict=True)

    key: SecretKey
    value: Annotated[SecretStr, Field(min_length=1, max_length=8192)]


class ProvisionRequest(_Wire):
    """The body of ``POST /v1/provisioning-requests``; unknown fields are rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=False, extra="forbid", strict=True
    )

    service_principal_id: Guid
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

    RESOLVE_TEMPLATE = "resolve_template"
    CREATE_JOB = "create_job"
    SAVE_SECRETS = "save_secrets"
    START_JOB = "start_job"
    VERIFY = "verify"


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


# The worker's bookkeeping, and intake's: the body's keyed fingerprint (a second POST for the
# in-flight app is only the same request when it matches) and the request it waits behind.
_INTERNAL = frozenset(
    {"retry_until", "lag_since", "create_sent_at", "request_fingerprint", "queued_behind"}
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
