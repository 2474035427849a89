"""The verify step: watch a (re)started job until Graph shows it works, or fails, or stopped.

Every signal Graph gives counts (:func:`workers.graph.health.assess`): a quarantine (whatever
``status.code`` says) fails ``JobQuarantined``, failing cycles ``JobFailing``. A finished first
cycle succeeds at once; a job that is started and showed no failure signal for
``verify_settle_s`` succeeds saying its first cycle is not finished yet (the health watch keeps
looking). A job that is not running fails ``JobNotStarted``: at ``verify_timeout_s`` when it
never showed as started (right after a start a lagging replica may still show the old
``Disabled``, and replication "might take several minutes"), or as soon as it has shown
``Paused``/``Disabled`` on every reading for the settle window after it had shown as started
(a pause or disable after our start: an administrator, or Graph itself; not the lag of a
replica, which shows the state from before the start).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from service.core.errors import JobNotStarted
from service.core.fields import utcnow
from service.core.health import Health
from service.core.models import Outcome, Record, Step
from workers.graph.client import GraphClient
from workers.graph.health import assess, first_cycle_finished
from workers.graph.models import SynchronizationJob
from workers.graph.response import GraphResponse
from workers.workflow.calls import CallRunner
from workers.workflow.deps import Deps, StepResult
from workers.workflow.failures import failing, quarantined
from workers.workflow.retry import CallKind

#: The steps that (re)start a job: verify times its window from the latest of them.
_STARTS = frozenset({Step.START_JOB, Step.RESTART_JOB, Step.LIFT_QUARANTINE})
#: Graph's clock and ours may differ a little: a cycle that began this close before the start
#: counts as the start's own.
_CLOCK_SKEW = timedelta(seconds=0.5)
_STOPPED = frozenset({Health.PAUSED, Health.DISABLED})


class VerifyJob:
    """The verify step, mixed into :class:`workers.workflow.steps.Steps`."""

    deps: Deps
    record: Record
    calls: CallRunner
    graph: GraphClient

    async def verify(self) -> StepResult:
        """Watch the started job for ``verify_settle_s`` and fail on any failure signal (the
        rules are in this module's docstring and docs/workflow.md)."""
        rec, settings = self.record, self.deps.settings
        if not rec.start:
            return StepResult(Outcome.SKIPPED, message="not started on request")
        w = _Window.of(rec, settings.verify_settle_s, settings.verify_timeout_s)
        sp, job_id = rec.service_principal_id, rec.job_id
        assert job_id is not None
        while True:
            current = await self.calls.call(
                Step.VERIFY, CallKind.READ, lambda crid: self.graph.get_job(sp, job_id, crid)
            )
            job = current.value
            verdict = assess(job, since=w.since, seen=w.seen)
            if verdict.health is Health.QUARANTINED:
                raise quarantined(current, verdict.reason)
            if verdict.health is Health.FAILING:
                raise failing(current, verdict.reason)
            schedule, status = job.schedule_state, job.status_code
            if verdict.health is Health.HEALTHY and first_cycle_finished(job, w.since, w.seen):
                last = job.status.last_execution
                ended = last.time_ended.isoformat() if last and last.time_ended else "?"
                return StepResult(
                    response=current,
                    message=f"job is Active; its first cycle finished "
                    f"({last.state if last else '?'} at {ended})",
                )
            now = utcnow()
            running = schedule == "Active" and verdict.health not in _STOPPED
            if running and now >= w.end:
                return StepResult(
                    response=current,
                    message=f"job is started (schedule Active, status {status or '?'}) and "
                    f"showed no failure signal for {w.length:g}s; its first cycle is not "
                    "finished yet (the health watch keeps looking)",
                )
            stopped_since = _stopped_since(rec, running, now, w.length)
            if stopped_since is not None:
                raise _not_started(
                    current,
                    f"job {job_id} was started, then showed {schedule or '?'}/{status or '?'} "
                    f"on every reading since {stopped_since:%H:%M:%SZ} ({w.length:g}s): "
                    f"{verdict.reason}; it was paused or disabled after the start",
                    verdict.health,
                )
            if now >= w.deadline:
                raise _not_started(
                    current,
                    f"job {job_id} is {schedule or '?'}/{status or '?'} "
                    f"{settings.verify_timeout_s:g}s after start: {verdict.reason}",
                    verdict.health,
                )
            await self.calls.wait(
                settings.verify_poll_s, f"job is {schedule}/{status}: {verdict.reason}"
            )


@dataclass(slots=True)
class _Window:
    """verify's clock: which cycles are old news, when the settle window and the timeout end."""

    since: datetime | None
    seen: datetime | None
    length: float
    end: datetime
    deadline: datetime

    @classmethod
    def of(cls, rec: Record, settle_s: float, timeout_s: float) -> _Window:
        # When the step that (re)started the job in this request began: cycles from before it
        # say nothing about this start (a restart or rotation follows failed ones).
        start = next((h for h in reversed(rec.history) if h.step in _STARTS), None)
        started_at = utcnow() if start is None else start.at
        since = seen = None
        if start is not None:
            took = timedelta(milliseconds=start.duration_ms or 0)
            since = start.at - took - _CLOCK_SKEW
            # exact where the step read the job before its POST: the last cycle it saw is old
            seen = rec.cycles_seen.get(start.step.value) if start.step else None
        length = min(settle_s, timeout_s)
        return cls(
            since,
            seen,
            length,
            started_at + timedelta(seconds=length),
            started_at + timedelta(seconds=timeout_s),
        )


def _stopped_since(rec: Record, running: bool, now: datetime, window_s: float) -> datetime | None:
    """Record a reading on the record (verify spans several runs: it defers between polls).
    When the job, once read running, has shown stopped on every reading since one at least
    ``window_s`` ago: the time of the first of them."""
    if running:
        rec.verify_ran_at = rec.verify_ran_at or now
        rec.verify_stopped_since = None
        return None
    if rec.verify_ran_at is None:
        return None  # never read running: maybe a replica still showing the old state
    since = rec.verify_stopped_since
    if since is None:
        rec.verify_stopped_since = now
        return None
    return since if now - since >= timedelta(seconds=window_s) and now > since else None


def _not_started(
    current: GraphResponse[SynchronizationJob], message: str, health: Health
) -> JobNotStarted:
    return JobNotStarted(
        message,
        graph_status=current.status,
        graph_request_id=current.request_id,
        details={"health": health.value},
    )
