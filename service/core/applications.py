"""Applications: what the health watch knows about each service principal whose job this service
started or adopted, as stored in Redis and returned by ``GET /v1/applications/{id}``.

One :class:`Application` per service principal holds its watched jobs (their last reading, the
health word of :class:`~service.core.health.Health` with its reason, when the watch looked and
will look again, the history of health changes), the ids of the requests that touched it and
the last request's notification targets. The store is :mod:`service.core.application_store`; the
watch that fills it is :mod:`workers.watch`. The schedule between two checks is data:
``PROVISIONER_WATCH_SCHEDULE`` (:func:`next_delay_s`).

A job's view is one model (:class:`WatchedJob`); the last cycle's per-user outcomes, read from
the provisioning logs, are its ``lastCycle`` (:mod:`service.core.cycles`).
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from service.core.cycles import LastCycle
from service.core.fields import utcnow
from service.core.health import Health
from service.core.models import CallbackAttempt

HEALTH_CHANGED = "application.health_changed"
MAX_HISTORY = 50  # health changes kept per job
MAX_REQUESTS = 50  # request ids kept per application
MAX_NOTIFICATIONS = 20  # delivery attempts of health events kept per application
NOT_CHECKED = "not checked yet"
GONE = "job no longer exists"
#: Callers of requests the service files itself (the watch's auto-restart): an API key's name
#: cannot hold a colon, so no API caller is one.
SYSTEM_CALLER_PREFIX = "system:"


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class ErrorView(_Wire):
    """Graph's synchronizationError, as it was read."""

    code: str | None = None
    message: str | None = None
    tenant_actionable: bool | None = None


class QuarantineView(_Wire):
    """Why and since when Graph quarantined the job, and when it will try again."""

    reason: str | None = None
    since: datetime | None = None
    next_attempt: datetime | None = None
    error: ErrorView | None = None


class ExecutionView(_Wire):
    """The job's last cycle (``status.lastExecution``)."""

    state: str | None = None
    began: datetime | None = None
    ended: datetime | None = None
    entitled: int | None = None  # countEntitled: users and groups the cycle found in scope
    error: ErrorView | None = None


class Reading(_Wire):
    """What one check of a job read from Graph, already assessed."""

    health: Health
    reason: str
    schedule_state: str | None = None
    status_code: str | None = None
    quarantine: QuarantineView | None = None
    last_execution: ExecutionView | None = None


class HealthChange(_Wire):
    """One change of a job's health word."""

    at: datetime
    from_: Health | None = Field(
        default=None, validation_alias=AliasChoices("from", "from_"), serialization_alias="from"
    )
    to: Health
    reason: str


#: WatchedJob's bookkeeping, not shown by the API.
JOB_INTERNAL = frozenset({"step", "missing_since", "expects_users", "expected_health"})


class WatchedJob(_Wire):
    """One job under watch: its last reading and the watch's own bookkeeping."""

    job_id: str
    template_id: str | None = None
    health: Health = Health.UNKNOWN
    reason: str = NOT_CHECKED
    schedule_state: str | None = None
    status_code: str | None = None
    quarantine: QuarantineView | None = None
    last_execution: ExecutionView | None = None
    last_cycle: LastCycle | None = None  # per-user outcomes (service/core/cycles.py)
    checked_at: datetime | None = None
    next_check_at: datetime | None = None
    health_since: datetime = Field(default_factory=utcnow)
    watching: bool = True
    #: Set up for assigned users and groups only (assignments + scope ``assigned``): a cycle
    #: that finds nobody in scope is ``failing`` (workers.graph.health.assess).
    expects_users: bool = False
    #: The health the request that last registered the job left it in on purpose
    #: (``start: false``: disabled; a pause: paused): the next reading that says so is
    #: recorded, not told (the request's own end already said it).
    expected_health: Health | None = None
    last_error: str | None = None  # the last check that read nothing (throttled, 5xx, ...)
    history: list[HealthChange] = Field(default_factory=list)
    step: int = 0  # index into the schedule of the delay before the next check
    missing_since: datetime | None = None  # the first 404, until a second one confirms it

    def public(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, mode="json", exclude=set(JOB_INTERNAL))


class LastRequest(_Wire):
    """The latest request that touched the application: whom to tell about a change."""

    id: str
    caller: str
    callback_url: str | None = None
    external_reference: str | None = None
    ended_at: datetime


class Application(_Wire):
    """A service principal's watched jobs, the requests that touched it and its notifications."""

    service_principal_id: str
    jobs: list[WatchedJob] = Field(default_factory=list)
    request_ids: list[str] = Field(default_factory=list)  # newest first
    callers: list[str] = Field(default_factory=list)
    last_request: LastRequest | None = None
    notifications: list[CallbackAttempt] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    def job(self, job_id: str) -> WatchedJob | None:
        return next((j for j in self.jobs if j.job_id == job_id), None)

    def healths(self) -> set[Health]:
        """The health words of its jobs (the indexes ``?health=`` reads)."""
        return {j.health for j in self.jobs}

    @property
    def health(self) -> Health:
        """Its worst job's health, in :class:`Health`'s order (``unknown`` without jobs)."""
        present = self.healths()
        return next((h for h in Health if h in present), Health.UNKNOWN)

    def touched_by(self, request_id: str, caller: str) -> None:
        """Remember a request (newest first, bounded) and its caller."""
        self.request_ids = [request_id, *(r for r in self.request_ids if r != request_id)]
        del self.request_ids[MAX_REQUESTS:]
        if caller not in self.callers:
            self.callers.append(caller)

    def note(self, attempt: CallbackAttempt) -> None:
        self.notifications.append(attempt)
        del self.notifications[:-MAX_NOTIFICATIONS]

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)

    @classmethod
    def from_json(cls, raw: str | bytes) -> Application:
        return cls.model_validate_json(raw)


class HealthEvent(_Wire):
    """A change of health to tell the last request's caller about (callback, ticket note)."""

    id: str
    at: datetime
    service_principal_id: str
    job_id: str
    template_id: str | None
    health: Health
    previous: Health | None
    reason: str
    request_id: str
    caller: str
    callback_url: str | None = None
    external_reference: str | None = None

    @classmethod
    def of(cls, app: Application, job: WatchedJob, change: HealthChange) -> HealthEvent | None:
        """The event for a change, or None when no request left anyone to tell."""
        last = app.last_request
        if last is None:
            return None
        name = f"{app.service_principal_id}/{job.job_id}/{change.at.isoformat()}"
        return cls(
            id=uuid.uuid5(uuid.NAMESPACE_URL, name).hex,
            at=change.at,
            service_principal_id=app.service_principal_id,
            job_id=job.job_id,
            template_id=job.template_id,
            health=change.to,
            previous=change.from_,
            reason=change.reason,
            request_id=last.id,
            caller=last.caller,
            callback_url=last.callback_url,
            external_reference=last.external_reference,
        )

    def body(self) -> bytes:
        """The signed callback's body, shaped like the request callbacks' events."""
        data = {
            "servicePrincipalId": self.service_principal_id,
            "jobId": self.job_id,
            "templateId": self.template_id,
            "health": self.health.value,
            "previousHealth": self.previous.value if self.previous else None,
            "reason": self.reason,
            "changedAt": self.at.isoformat(),
            "requestId": self.request_id,
            "externalReference": self.external_reference,
        }
        event = {"type": HEALTH_CHANGED, "timestamp": utcnow().isoformat(), "data": data}
        return json.dumps(event, separators=(",", ":")).encode()

    def note_text(self) -> str:
        """The ticket note: the new health and why."""
        was = f" (was {self.previous.value})" if self.previous else ""
        return (
            f"Entra provisioning: the application {self.service_principal_id} is now "
            f"{self.health.value}{was}.\nJob: {self.job_id}.\nReason: {self.reason}"
        )


def next_delay_s(
    schedule: Sequence[int], step: int, jitter: float, rng: random.Random | None = None
) -> float:
    """Seconds until the next check: the schedule's ``step``-th delay (the last one repeats),
    shortened by up to ``jitter`` of itself at random so that jobs that ended together spread
    out, and a delay is never exceeded."""
    base = float(schedule[min(max(step, 0), len(schedule) - 1)])
    return base * (1 - jitter * (rng or random).random())


def first_delay_s(
    schedule: Sequence[int], tick_s: float, jitter: float, rng: random.Random | None = None
) -> float:
    """Seconds from a request's end to its job's first check: the first delay less one watch
    tick (the check runs at the first tick after it is due), so it comes within the first
    delay (at most 60 s, see the settings)."""
    base = max(1.0, float(schedule[0]) - tick_s)
    return base * (1 - jitter * (rng or random).random())
