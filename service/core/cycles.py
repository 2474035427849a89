"""A watched job's last cycle, user by user: ``lastCycle`` in ``GET /v1/applications/{id}``.

The health watch fills it from Graph's provisioning logs (:mod:`workers.watch.last_cycle`):
how many objects the job's last finished cycle (``status.lastExecution``) provisioned
(``succeeded``), failed on (``failed``) or passed over (``skipped``), and the most frequent
failure reasons. ``truncated`` says the watch stopped at its page budget, so the counts are a
floor; ``unavailable`` says why there are no counts at all (no ``AuditLog.Read.All``, or the
logs could not be read), in which case the counts are null. Pure models, no I/O.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

MAX_TOP_FAILURES = 5


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class FailureCount(_Wire):
    """One failure reason (Graph's ``errorCode``, else its reason text) and how often."""

    reason: str
    count: int
    message: str | None = None  # Graph's words for the first entry of this reason


class LastCycle(_Wire):
    """The outcomes of the job's last finished cycle, read from the provisioning logs: counts
    by status, the most frequent failure reasons (at most 5), ``truncated`` when the watch's
    page budget ended the read (the counts are then a floor), ``unavailable`` instead of
    counts when the logs could not be read (e.g. no ``AuditLog.Read.All``)."""

    began: datetime | None = None
    ended: datetime | None = None
    cycle_id: str | None = None
    succeeded: int | None = None
    failed: int | None = None
    skipped: int | None = None
    warnings: int | None = None
    top_failures: list[FailureCount] = Field(default_factory=list)
    truncated: bool = False
    unavailable: str | None = None
    read_at: datetime | None = None
