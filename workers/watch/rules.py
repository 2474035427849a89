"""The watch's rules, pure: what a request's end and each check do to an application.

- A request that ends ``succeeded`` with a job puts the job under watch (or back to the start
  of the schedule): first check within the schedule's first delay.
- A reading records what Graph said; a change of health is recorded with its time, resets the
  schedule to its start (look again soon) and becomes an event to notify, except the first
  reading of a job when it only confirms what the request already said (``healthy``, or
  ``unknown`` while no cycle has finished), and the next reading after a request that left
  the job stopped on purpose (``start: false``: disabled; a pause: paused) when it says so.
  Otherwise the next delay is the next step's.
- A ``deprovision`` request that succeeded takes its job off the application and the watch.
- A 404 is confirmed by a second check one first-delay later; then the job is ``unknown``
  with reason "job no longer exists" and is not watched any more.
- A check that read nothing (throttled past its budget, 5xx, 401/403, no token) changes no
  health: it is tried again at the same step, sooner when Graph said when.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from service.core.application_store import Update, member
from service.core.applications import (
    GONE,
    MAX_HISTORY,
    SYSTEM_CALLER_PREFIX,
    Application,
    HealthChange,
    HealthEvent,
    LastRequest,
    Reading,
    WatchedJob,
    first_delay_s,
    next_delay_s,
)
from service.core.health import Health
from service.core.models import Record
from service.core.settings import Settings

#: Health words a job's first reading may have without telling anyone: the request's own
#: ``succeeded`` already said so.
QUIET_FIRST = frozenset({Health.HEALTHY, Health.UNKNOWN})
#: What a succeeded request left its job in on purpose: a reading that says so is not news.
EXPECTED = {"start:false": Health.DISABLED, "pause": Health.PAUSED}
UNREADABLE_RETRY_S = 60.0  # the longest wait before trying again a check that read nothing


@dataclass(frozen=True, slots=True)
class Schedule:
    """The delays between checks (``PROVISIONER_WATCH_SCHEDULE``), their jitter and the tick."""

    delays: tuple[int, ...]
    jitter: float
    tick_s: float
    rng: random.Random = field(default_factory=random.Random)

    @classmethod
    def of(cls, settings: Settings, rng: random.Random | None = None) -> Schedule:
        return cls(
            settings.watch_schedule,
            settings.watch_jitter,
            settings.watch_interval_s,
            rng or random.Random(),
        )

    def first(self, now: datetime) -> datetime:
        return now + timedelta(
            seconds=first_delay_s(self.delays, self.tick_s, self.jitter, self.rng)
        )

    def after(self, now: datetime, step: int) -> datetime:
        return now + timedelta(seconds=next_delay_s(self.delays, step, self.jitter, self.rng))


@dataclass(slots=True)
class Result:
    """What a rule did: the store's update and the change of health, if any."""

    update: Update
    change: HealthChange | None = None


def _ms(moment: datetime) -> float:
    return moment.timestamp() * 1000


def registered(app: Application, record: Record, now: datetime, schedule: Schedule) -> Result:
    """A request ended succeeded with ``record.job_id``: watch that job, from the start."""
    assert record.job_id is not None
    app.touched_by(record.id, record.caller)
    if not record.caller.startswith(SYSTEM_CALLER_PREFIX) or app.last_request is None:
        # (the service's own requests leave the people who asked last as the ones to tell)
        app.last_request = LastRequest(
            id=record.id,
            caller=record.caller,
            callback_url=record.callback_url,
            external_reference=record.external_reference,
            ended_at=now,
        )
    job = app.job(record.job_id)
    if job is None:
        job = WatchedJob(job_id=record.job_id, template_id=record.template_id, health_since=now)
        app.jobs.append(job)
    job.template_id = record.template_id or job.template_id
    job.expected_health = EXPECTED.get(record.action if record.start else "start:false")
    if record.action == "provision":  # an action on the job keeps what onboarding set up
        job.expects_users = bool(record.assignments) and (record.scope or "assigned") == "assigned"
    due = schedule.first(now)
    if not job.watching or job.next_check_at is None or due < job.next_check_at:
        job.next_check_at = due
    job.watching, job.step, job.missing_since = True, 0, None
    app.updated_at = now
    return Result(
        Update(watch={member(app.service_principal_id, job.job_id): _ms(job.next_check_at)})
    )


def deprovisioned(app: Application, record: Record, now: datetime) -> Result:
    """A ``deprovision`` request succeeded: its job is gone from the tenant, so it leaves the
    application (and the watch); the request is still listed among the application's."""
    app.touched_by(record.id, record.caller)
    gone = [j for j in app.jobs if j.job_id == record.job_id]
    app.jobs = [j for j in app.jobs if j.job_id != record.job_id]
    app.updated_at = now
    return Result(Update(watch={member(app.service_principal_id, j.job_id): None for j in gone}))


def _change(
    app: Application, job: WatchedJob, to: Health, reason: str, now: datetime, *, notify: bool
) -> Result:
    change = HealthChange(at=now, from_=job.health, to=to, reason=reason)
    job.history.append(change)
    del job.history[:-MAX_HISTORY]
    job.health, job.reason, job.health_since, job.step = to, reason, now, 0
    event = HealthEvent.of(app, job, change) if notify else None
    return Result(Update(events=[event] if event else []), change)


def observed(
    app: Application, job: WatchedJob, reading: Reading, now: datetime, schedule: Schedule
) -> Result:
    """A check read the job."""
    first = job.checked_at is None
    app.updated_at = now
    job.schedule_state, job.status_code = reading.schedule_state, reading.status_code
    job.quarantine, job.last_execution = reading.quarantine, reading.last_execution
    job.checked_at, job.missing_since, job.last_error = now, None, None
    expected, job.expected_health = job.expected_health, None
    if reading.health != job.health:
        quiet = (first and reading.health in QUIET_FIRST) or reading.health is expected
        result = _change(app, job, reading.health, reading.reason, now, notify=not quiet)
    else:
        job.reason = reading.reason
        job.step = min(job.step + 1, len(schedule.delays) - 1)
        result = Result(Update())
    return _reschedule(app, job, schedule.after(now, job.step), result)


def missing(app: Application, job: WatchedJob, now: datetime, schedule: Schedule) -> Result:
    """A check was answered 404: confirm once, then record the job as gone."""
    if job.missing_since is None:
        job.missing_since = now
        job.last_error = "HTTP 404: the job was not found; checking again to confirm"
        return _reschedule(app, job, schedule.after(now, 0), Result(Update()))
    job.checked_at, job.last_error = now, None
    if job.health is Health.UNKNOWN and job.reason == GONE:
        result = Result(Update())
    else:
        result = _change(app, job, Health.UNKNOWN, GONE, now, notify=True)
    job.watching, job.next_check_at = False, None
    result.update.watch[member(app.service_principal_id, job.job_id)] = None
    app.updated_at = now
    return result


def unreadable(
    app: Application,
    job: WatchedJob,
    error: str,
    retry_in_s: float | None,
    now: datetime,
    schedule: Schedule,
) -> Result:
    """A check read nothing: keep the health, try again at the same step (sooner if told)."""
    job.last_error = error
    wait = min(UNREADABLE_RETRY_S, schedule.delays[min(job.step, len(schedule.delays) - 1)])
    if retry_in_s is not None:
        wait = max(1.0, min(wait, retry_in_s))
    return _reschedule(app, job, now + timedelta(seconds=wait), Result(Update()))


def _reschedule(app: Application, job: WatchedJob, due: datetime, result: Result) -> Result:
    job.next_check_at = due
    result.update.watch[member(app.service_principal_id, job.job_id)] = _ms(due)
    return result
