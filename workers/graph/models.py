"""Graph's synchronization resources as typed models, parsed once where the answer arrives.

Field names follow Graph's camelCase on the wire (``templateId``) and snake_case in Python
(``template_id``). Every field is optional and unknown fields are ignored: Graph adds
properties over time and the beta and v1.0 shapes differ, so the models only insist on what
the workflow reads. A body that does not fit at all (a list where an object belongs, a string
for a number) is a :class:`~service.core.errors.GraphError` with code ``MalformedResponse``,
raised by :mod:`workers.graph.client`. Reference: the synchronizationJob, synchronizationStatus,
synchronizationQuarantine, synchronizationTaskExecution and synchronizationTemplate pages.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel


def _blank_is_none(value: Any) -> Any:
    """Graph's own Get example sends ``""`` for a quarantine's dates: no date, not an error."""
    return None if value == "" else value


Time = Annotated[datetime | None, BeforeValidator(_blank_is_none)]


class GraphModel(BaseModel):
    """Base of every Graph resource: camelCase aliases, unknown fields ignored, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )


class SynchronizationError(GraphModel):
    """What went wrong, as Graph words it (``tenantActionable``: the customer can fix it)."""

    code: str | None = None
    message: str | None = None
    tenant_actionable: bool | None = None


class SynchronizationQuarantine(GraphModel):
    """Why and since when a job is quarantined; present only while it is."""

    reason: str | None = None
    current_began: Time = None
    next_attempt: Time = None
    series_began: Time = None
    series_count: int | None = None
    error: SynchronizationError | None = None


class SynchronizationTaskExecution(GraphModel):
    """One run (cycle) of a job: ``state`` is ``Succeeded``, ``Failed`` or ``EntryLevelErrors``."""

    activity_identifier: str | None = None
    state: str | None = None
    time_began: Time = None
    time_ended: Time = None
    count_entitled: int | None = None
    count_exported: int | None = None
    count_imported: int | None = None
    error: SynchronizationError | None = None


class KeyLongValue(GraphModel):
    """A stringKeyLongValuePair (``synchronizedEntryCountByType`` items)."""

    key: str | None = None
    value: int | None = None


class SynchronizationStatus(GraphModel):
    """A job's status: ``code`` is ``NotConfigured``, ``NotRun``, ``Active``, ``Paused`` or
    ``Quarantine``; a quarantined job may still read ``Paused`` (Graph's own Get example), so
    ``quarantine`` is the signal, not the code."""

    code: str | None = None
    count_successive_complete_failures: int | None = None
    escrows_pruned: bool | None = None
    last_execution: SynchronizationTaskExecution | None = None
    last_successful_execution: SynchronizationTaskExecution | None = None
    last_successful_execution_with_exports: SynchronizationTaskExecution | None = None
    quarantine: SynchronizationQuarantine | None = None
    steady_state_first_achieved_time: Time = None
    #: "Count of synchronized objects, listed by object type" (stringKeyLongValuePair): the
    #: objects the job keeps in sync, whatever the last (incremental) cycle processed.
    synchronized_entry_count_by_type: list[KeyLongValue] = Field(default_factory=list)
    troubleshooting_url: str | None = None


class SynchronizationSchedule(GraphModel):
    """When the job runs: ``state`` is ``Active``, ``Disabled`` or ``Paused``."""

    state: str | None = None
    interval: str | None = None
    expiration: Time = None


class SynchronizationJob(GraphModel):
    """A principal's synchronization job."""

    id: str | None = None
    template_id: str | None = None
    schedule: SynchronizationSchedule = Field(default_factory=SynchronizationSchedule)
    status: SynchronizationStatus = Field(default_factory=SynchronizationStatus)

    @property
    def schedule_state(self) -> str:
        return self.schedule.state or ""

    @property
    def status_code(self) -> str:
        return self.status.code or ""


class SynchronizationTemplate(GraphModel):
    """A template a principal's job can be made from; ``default`` marks the one to use."""

    id: str | None = None
    application_id: str | None = None
    default: bool = False
    description: str | None = None
    discoverable: bool | None = None
    factory_tag: str | None = None


class Collection(GraphModel):
    """One page of a Graph collection: its items (raw, parsed by the caller's model) and the
    opaque link to the next page."""

    value: list[dict[str, Any]] = Field(default_factory=list)
    next_link: str | None = Field(default=None, alias="@odata.nextLink")


class ODataInnerError(GraphModel):
    request_id: str | None = Field(default=None, alias="request-id")
    client_request_id: str | None = Field(default=None, alias="client-request-id")


class ODataErrorDetail(GraphModel):
    code: str | None = None
    message: str | None = None
    inner_error: ODataInnerError | None = None


class ODataError(GraphModel):
    """The body of a Graph error answer: ``{"error": {"code", "message", "innerError"}}``."""

    error: ODataErrorDetail = Field(default_factory=ODataErrorDetail)

    @classmethod
    def parse(cls, body: Any) -> ODataErrorDetail:
        """The error detail of any body; an empty one when the body is not Graph's shape."""
        try:
            return cls.model_validate(body if isinstance(body, dict) else {}).error
        except ValueError:
            return ODataErrorDetail()
