"""The steps of the lifecycle actions (issue 12): find_job, pause_job, restart_job, delete_job
and lift_quarantine, and :func:`action_table`, which adds them (and the smoke test) to a run's
step table. Which steps an action runs, in which order, is the table
:data:`service.core.actions.ACTION_STEPS`.

Every step reads Graph before it changes anything and is safe to run twice: a second pause of a
paused job only reads it, a DELETE answered 404 is "already gone", a restart or PUT secrets
repeated after a crash has the same effect as the first. Rules: docs/workflow.md ("Actions").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from service.core.actions import reset_scope_value
from service.core.errors import GraphError, JobNotFound, JobNotPaused
from service.core.fields import utcnow
from service.core.health import Health
from service.core.models import Outcome, Step
from workers.graph.health import assess
from workers.graph.models import SynchronizationJob
from workers.workflow.retry import CallKind
from workers.workflow.smoke import smoke_test
from workers.workflow.steps import StepResult, Steps

StepTable = dict[Step, Callable[[], Awaitable[StepResult]]]


def action_table(steps: Steps) -> StepTable:
    """The lifecycle steps' coroutines, by step, sharing ``steps``' record and call runner."""
    return {
        Step.FIND_JOB: lambda: find_job(steps),
        Step.PAUSE_JOB: lambda: pause_job(steps),
        Step.RESTART_JOB: lambda: restart_job(steps),
        Step.DELETE_JOB: lambda: delete_job(steps),
        Step.LIFT_QUARANTINE: lambda: lift_quarantine(steps),
        Step.SMOKE_TEST: lambda: smoke_test(steps),
        Step.VERIFY: lambda: verify(steps),
    }


async def _jobs(s: Steps) -> tuple[list[SynchronizationJob], StepResult]:
    resp = await s.calls.call(
        Step.FIND_JOB, CallKind.LOOKUP, lambda crid: s.graph.list_jobs(s.sp, crid)
    )
    return [j for j in resp.value if j.id], StepResult(response=resp)


async def find_job(s: Steps) -> StepResult:
    """The principal's job for the requested template; with no templateId, its only job, or
    (several jobs) the one of the template provisioning would resolve. None found: deprovision
    is done already ("already gone"), every other action fails ``JobNotFound``."""
    rec = s.record
    jobs, listed = await _jobs(s)
    wanted = rec.requested_template_id
    if wanted is not None:
        same = [j for j in jobs if j.template_id == wanted]
    elif len(jobs) <= 1:
        same = jobs
    else:
        await s.resolve_template()  # sets rec.template_id (TemplateNotFound / Ambiguous)
        same = [j for j in jobs if j.template_id == rec.template_id]
    resp = listed.response
    if not same:
        what = f"template {wanted}" if wanted else "this service principal"
        if rec.action == "deprovision":
            rec.job_id = None
            return StepResult(Outcome.ADOPTED, resp, f"no job for {what}: already gone")
        others = sorted({str(j.template_id) for j in jobs})
        raise JobNotFound(
            f"no synchronization job for {what}"
            + (f" (jobs exist for: {', '.join(others)})" if others else "")
            + "; provision it first",
            graph_status=resp.status if resp else None,
            graph_request_id=resp.request_id if resp else None,
            details={"jobTemplates": others},
        )
    job = same[0]
    rec.job_id, rec.template_id = job.id, job.template_id
    return StepResult(
        response=resp, message=f"job {job.id} is {job.schedule_state}/{job.status_code}"
    )


def _job_id(s: Steps) -> str:
    assert s.record.job_id is not None
    return s.record.job_id


def _paused(job: SynchronizationJob) -> bool:
    return job.schedule_state == "Paused" or job.status_code == "Paused"


async def pause_job(s: Steps) -> StepResult:
    """POST pause unless the job already reads Paused, then poll until it does."""
    job_id, settings = _job_id(s), s.deps.settings
    current = await s.calls.call(
        Step.PAUSE_JOB, CallKind.READ, lambda crid: s.graph.get_job(s.sp, job_id, crid)
    )
    if _paused(current.value):
        return StepResult(response=current, message="job reads Paused")
    await s.calls.call(
        Step.PAUSE_JOB, CallKind.WRITE, lambda crid: s.graph.pause_job(s.sp, job_id, crid)
    )
    window_end = utcnow() + timedelta(seconds=settings.verify_timeout_s)
    while True:
        current = await s.calls.call(
            Step.PAUSE_JOB, CallKind.READ, lambda crid: s.graph.get_job(s.sp, job_id, crid)
        )
        job = current.value
        if _paused(job):
            return StepResult(response=current, message="paused; job reads Paused")
        if utcnow() >= window_end:
            raise JobNotPaused(
                f"job {job_id} is {job.schedule_state}/{job.status_code} "
                f"{settings.verify_timeout_s:g}s after pause",
                graph_status=current.status,
                graph_request_id=current.request_id,
            )
        await s.calls.wait(settings.verify_poll_s, f"job is {job.schedule_state}/{job.status_code}")


async def restart_job(s: Steps) -> StepResult:
    """GET the job (the cycle it shows is old news for verify), then POST restart with the
    request's reset scope (Graph's comma-separated flags)."""
    job_id = _job_id(s)
    scope = reset_scope_value(s.record.reset_scope)
    current = await s.calls.call(
        Step.RESTART_JOB, CallKind.READ, lambda crid: s.graph.get_job(s.sp, job_id, crid)
    )
    await s.note_cycle(Step.RESTART_JOB, current.value)
    resp = await s.calls.call(
        Step.RESTART_JOB,
        CallKind.WRITE,
        lambda crid: s.graph.restart_job(s.sp, job_id, scope, crid),
    )
    return StepResult(response=resp, message=f"restarted, resetScope {scope or '(empty)'!r}")


async def delete_job(s: Steps) -> StepResult:
    """DELETE the job; a 404 means it is gone already (a repeat, or someone else's delete)."""
    if s.record.job_id is None:
        return StepResult(Outcome.SKIPPED, message="no job to delete")
    job_id = s.record.job_id
    try:
        resp = await s.calls.call(
            Step.DELETE_JOB, CallKind.DELETE, lambda crid: s.graph.delete_job(s.sp, job_id, crid)
        )
    except GraphError as e:
        if e.status != 404:
            raise
        return StepResult(Outcome.ADOPTED, message=f"job {job_id} already gone (404)")
    return StepResult(response=resp, message=f"deleted job {job_id}")


async def lift_quarantine(s: Steps) -> StepResult:
    """After new credentials: restart a quarantined job with resetScope ``QuarantineState``."""
    job_id = _job_id(s)
    current = await s.calls.call(
        Step.LIFT_QUARANTINE, CallKind.READ, lambda crid: s.graph.get_job(s.sp, job_id, crid)
    )
    health = assess(current.value)
    if health.health is not Health.QUARANTINED:
        return StepResult(Outcome.SKIPPED, current, f"not quarantined: {health.reason}")
    await s.note_cycle(Step.LIFT_QUARANTINE, current.value)
    resp = await s.calls.call(
        Step.LIFT_QUARANTINE,
        CallKind.WRITE,
        lambda crid: s.graph.restart_job(s.sp, job_id, "QuarantineState", crid),
    )
    return StepResult(
        response=resp, message=f"restarted with resetScope QuarantineState ({health.reason})"
    )


async def verify(s: Steps) -> StepResult:
    """The verify step, except after a rotation that restarted nothing (nothing to verify)."""
    rec = s.record
    if rec.action == "rotateCredentials" and not any(
        h.step is Step.LIFT_QUARANTINE and h.outcome is Outcome.SUCCEEDED for h in rec.history
    ):
        return StepResult(Outcome.SKIPPED, message="no restart to verify", silent=True)
    return await s.verify()
