"""From a job's Graph status to one :class:`~service.core.health.Health` word, and why.

Every signal Graph gives counts, worst first: a non-null ``status.quarantine`` whatever
``status.code`` says (Graph's own Get example shows a quarantined job with code ``Paused``), a
``Quarantine`` code, a ``Disabled`` or ``Paused`` schedule, a ``Failed`` last execution or
successive complete failures, and ``NotRun``/``NotConfigured`` as "not yet". Used by the
workflow's verify step and by the health watch, so both say the same thing about one job.
Reference: synchronizationStatus, synchronizationQuarantine, synchronizationTaskExecution.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from service.core.health import Health
from workers.graph.models import SynchronizationJob, SynchronizationTaskExecution

#: Status codes that mean "configured, no cycle finished yet".
NOT_YET = frozenset({"NotRun", "NotConfigured", ""})


@dataclass(frozen=True, slots=True)
class Assessment:
    """A job's health and a one-line reason that quotes Graph's own words."""

    health: Health
    reason: str


def failed(execution: SynchronizationTaskExecution) -> bool:
    """True for a cycle that failed. Right after start Graph shows a ``Failed`` placeholder
    that never ran (``timeBegan`` 0001-01-01, error code ``None``): not a failure."""
    if execution.state != "Failed":
        return False
    error_code = execution.error.code if execution.error else None
    never_ran = execution.time_began is not None and execution.time_began.year <= 1
    return not (never_ran and error_code in (None, "", "None"))


def first_cycle_finished(
    job: SynchronizationJob, since: datetime | None = None, seen: datetime | None = None
) -> bool:
    """True once a cycle has really ended (``lastExecution.timeEnded`` after year 1) and it is
    the cycle of this start, not one from before it: one that began after ``seen`` when given
    (the last cycle Graph showed before the start, on Graph's own clock), else one that ended
    after ``since``."""
    last = job.status.last_execution
    if last is None or last.time_ended is None or last.time_ended.year <= 1:
        return False
    if seen is not None:
        return not _before(last, None, seen)
    return since is None or last.time_ended >= since


def _before(
    execution: SynchronizationTaskExecution | None,
    since: datetime | None,
    seen: datetime | None = None,
) -> bool:
    """True for a cycle from before a start or restart: old news. With ``seen`` (the
    ``timeBegan`` of the last cycle Graph showed right before the start) that is exact: the same
    cycle or an older one. Else it is one that began before ``since`` (our clock, less an
    allowance for skew), which can take a cycle that began just before the start for its own."""
    if execution is None or execution.time_began is None or execution.time_began.year <= 1:
        return False
    if seen is not None:
        return execution.time_began <= seen
    return since is not None and execution.time_began < since


def provisioned_nobody(job: SynchronizationJob) -> bool:
    """True when the last finished cycle found nobody in scope (``countEntitled`` 0) and
    nothing says anyone was ever provisioned. ``countEntitled`` counts the entries a cycle
    *processed*: a quiet incremental cycle of a job that provisions its users can show 0, so
    objects kept in sync (``synchronizedEntryCountByType``) or a cycle that exported
    (``lastSuccessfulExecutionWithExports``) clear it. A count not reported is not judged."""
    status = job.status
    last = status.last_execution
    if last is None or last.count_entitled != 0:
        return False
    if any((pair.value or 0) > 0 for pair in status.synchronized_entry_count_by_type):
        return False
    exported = status.last_successful_execution_with_exports
    if exported is None:
        return True
    ended = exported.time_ended is not None and exported.time_ended.year > 1
    return not (ended or (exported.count_exported or 0) > 0)


def assess(
    job: SynchronizationJob,
    *,
    expects_users: bool = False,
    since: datetime | None = None,
    seen: datetime | None = None,
) -> Assessment:
    """The job's health, the worst signal first. ``expects_users``: the job was set up for
    assigned users and groups only (onboarding with assignments, scope ``assigned``), so a
    finished cycle that found nobody in scope (``countEntitled`` 0) is ``failing``, not
    ``healthy``: it provisions nobody while it looks fine. ``since``: the (re)start the caller
    verifies; a cycle that began before it (and the failure count it left) says nothing about
    this start (the failed cycles that led to a restart or a credential rotation); ``seen``: the
    ``timeBegan`` of the last cycle Graph showed before that start, which tells old cycles from
    new ones exactly (it wins over ``since``)."""
    status, schedule = job.status, job.schedule_state
    quarantine = status.quarantine
    if quarantine is not None or status.code == "Quarantine":
        why = (quarantine.reason if quarantine else None) or "Unknown"
        error = quarantine.error if quarantine else None
        detail = f": {error.code}: {error.message}" if error and error.code else ""
        return Assessment(Health.QUARANTINED, f"quarantined ({why}){detail}")
    if schedule == "Disabled":
        return Assessment(Health.DISABLED, "the job's schedule is Disabled")
    if schedule == "Paused" or status.code == "Paused":
        return Assessment(Health.PAUSED, "the job is paused")
    last = status.last_execution
    stale = _before(last, since, seen)
    failures = 0 if stale else status.count_successive_complete_failures or 0
    if not stale and ((last is not None and failed(last)) or failures > 0):
        error = last.error if last else None
        detail = f": {error.code}: {error.message}" if error and error.code else ""
        return Assessment(Health.FAILING, f"the last cycle failed ({failures} in a row){detail}")
    if status.code in NOT_YET:
        return Assessment(
            Health.UNKNOWN, f"no cycle has finished yet ({status.code or 'no status'})"
        )
    if schedule == "Active" and status.code == "Active":
        if expects_users and provisioned_nobody(job):
            return Assessment(
                Health.FAILING,
                "the last cycle provisioned nobody (0 users or groups in scope): check the "
                "app's assignments and that its scope is 'assigned users and groups'",
            )
        return Assessment(Health.HEALTHY, "scheduled and running")
    return Assessment(Health.UNKNOWN, f"schedule {schedule or '?'}, status {status.code or '?'}")
