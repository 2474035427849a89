"""The workflow's five steps, each safe to run twice.

Each step checks Graph (or the record) before it changes anything and returns a
:class:`StepResult` for the history; :mod:`workers.workflow.run` runs them in order, records their
outcomes and turns failures into a final state. The rules are in docs/workflow.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from service.core.errors import (
    CredentialsRejected,
    GraphError,
    JobFailing,
    JobNotStarted,
    JobQuarantined,
    RetryBudgetExhausted,
    TemplateAmbiguous,
    TemplateNotFound,
    WorkflowFailed,
)
from service.core.health import Health
from service.core.models import Outcome, Record, Step, utcnow
from service.core.settings import Settings
from service.core.store import Store
from workers.graph.client import GraphClient, GraphResponse
from workers.graph.health import assess, first_cycle_finished
from workers.graph.models import SynchronizationJob
from workers.metrics import WorkerMetrics
from workers.workflow.calls import Ambiguous, CallRunner, CancelRequested, Defer
from workers.workflow.claim import CreateNote, JobClaim, LeaseLost
from workers.workflow.retry import CallKind
from workers.workflow.throttle import Throttle


@dataclass(frozen=True, slots=True)
class Deps:
    """What a run needs; built once per worker process in ``on_startup``."""

    settings: Settings
    store: Store
    graph: GraphClient
    throttle: Throttle
    stopping: Callable[[], bool] = lambda: False
    metrics: WorkerMetrics = field(default_factory=WorkerMetrics)


@dataclass(slots=True)
class StepResult:
    """What a step reports for the history line."""

    outcome: Outcome = Outcome.SUCCEEDED
    response: GraphResponse[Any] | None = None
    message: str | None = None


class Steps:
    """The steps of one run of one request, sharing its record and call runner."""

    def __init__(self, deps: Deps, record: Record, calls: CallRunner) -> None:
        self.deps = deps
        self.record = record
        self.sp = record.service_principal_id
        self.calls = calls
        self.graph = deps.graph

    def table(self) -> dict[Step, Callable[[], Awaitable[StepResult]]]:
        """Each step's coroutine, by step."""
        return {
            Step.RESOLVE_TEMPLATE: self.resolve_template,
            Step.CREATE_JOB: self.create_job,
            Step.SAVE_SECRETS: self.save_secrets,
            Step.START_JOB: self.start_job,
            Step.VERIFY: self.verify,
        }

    async def resolve_template(self) -> StepResult:
        """Pick the template: the requested one if listed, else the only or the default one."""
        resp = await self.calls.call(
            Step.RESOLVE_TEMPLATE,
            CallKind.LOOKUP,
            lambda crid: self.graph.list_templates(self.sp, crid),
        )
        templates = [t for t in resp.value if t.id]
        ids = [str(t.id) for t in templates]
        wanted = self.record.requested_template_id
        ctx: dict[str, Any] = {"graph_status": resp.status, "graph_request_id": resp.request_id}
        if wanted is not None:
            if wanted not in ids:
                raise TemplateNotFound(
                    f"template {wanted!r} is not available for this service principal; "
                    f"available: {', '.join(ids) or 'none'}",
                    details={"available": ids},
                    **ctx,
                )
            chosen = wanted
        elif len(ids) == 1:
            chosen = ids[0]
        else:
            defaults = [str(t.id) for t in templates if t.default]
            if not ids:
                raise TemplateNotFound(
                    "this service principal has no synchronization templates "
                    "(is it a gallery app that supports provisioning?)",
                    details={"available": []},
                    **ctx,
                )
            if len(defaults) != 1:
                raise TemplateAmbiguous(
                    f"several templates and no single default: {', '.join(ids)}; "
                    "pass templateId to choose one",
                    details={"available": ids},
                    **ctx,
                )
            chosen = defaults[0]
        self.record.template_id = chosen
        return StepResult(response=resp, message=f"template {chosen}")

    async def _find_job(
        self,
    ) -> tuple[SynchronizationJob | None, GraphResponse[list[SynchronizationJob]]]:
        resp = await self.calls.call(
            Step.CREATE_JOB, CallKind.LOOKUP, lambda crid: self.graph.list_jobs(self.sp, crid)
        )
        same = [j for j in resp.value if j.id and j.template_id == self.record.template_id]
        return (same[0] if same else None), resp

    async def create_job(self) -> StepResult:
        """Adopt the principal's job for the template, or create it; never POST twice blindly.

        The whole list-decide-POST-record section runs under the claim on the RESOLVED
        (principal, template) (:mod:`workers.workflow.claim`), so concurrent requests, whatever
        templateId they sent, never both POST. A create whose answer was not seen leaves a note
        that makes every run wait for Graph's job list (polling with backoff) for up to
        ``create_settle_s`` before another POST: replication "might take several minutes"."""
        assert self.record.template_id is not None
        settings = self.deps.settings
        claim = JobClaim(
            self.deps.store.redis,
            self.deps.store.keys,
            self.sp,
            self.record.template_id,
            ttl_s=settings.job_claim_ttl_s,
            note_ttl_s=settings.create_settle_s + settings.job_claim_ttl_s + 60,
        )
        while True:
            if not await claim.acquire():
                wait = min(1.0, await claim.wait_s())
                await self.calls.wait(wait, "another request holds the job's create claim")
                continue
            try:
                outcome = await self._create_holding(claim)
            except LeaseLost:
                outcome = 0.2  # the lease lapsed before the POST: start over under a new one
            finally:
                await claim.release()
            if isinstance(outcome, StepResult):
                return outcome
            await self.calls.wait(outcome, "an earlier create is not in Graph's job list yet")

    async def _create_holding(self, claim: JobClaim) -> StepResult | float:
        """Under the claim: the result, or how long to wait before listing again."""
        rec, settings = self.record, self.deps.settings
        template = rec.template_id
        assert template is not None
        existing, listed = await self._find_job()
        if existing is not None:
            rec.job_id, rec.create_sent_at = existing.id, None
            return StepResult(Outcome.ADOPTED, listed, "adopted existing job")
        note = await claim.note()
        if note is not None and note.job_id:
            rec.job_id, rec.create_sent_at = note.job_id, None
            return StepResult(
                Outcome.ADOPTED,
                listed,
                f"adopted job {note.job_id} created by request {note.request_id} "
                "(Graph's job list does not show it yet)",
            )
        sent = [t for t in (note.sent_at if note else None, rec.create_sent_at) if t is not None]
        if sent:
            elapsed = (utcnow() - max(sent)).total_seconds()
            left = settings.create_settle_s - elapsed
            if left > 0:
                # Poll until consistent: list again after half the time waited so far (1 s,
                # then growing), at most create_poll_cap_s, never past the settle budget.
                return max(0.1, min(settings.create_poll_cap_s, max(1.0, elapsed / 2), left))
        await claim.confirm()
        mine = CreateNote(utcnow(), rec.id)
        await claim.write_note(mine)
        rec.create_sent_at = mine.sent_at
        await self.deps.store.save(rec)  # before the POST: a crash now is remembered
        try:
            created = await self.calls.call(
                Step.CREATE_JOB,
                CallKind.CREATE,
                lambda crid: self.graph.create_job(self.sp, template, crid),
            )
        except Ambiguous:
            return 0.5  # made or not: list again, under the settle rule above
        except (GraphError, RetryBudgetExhausted, Defer, CancelRequested):
            # A clear refusal, or the POST never went out (throttle or lag wait): nothing made.
            await claim.drop_note(mine)
            rec.create_sent_at = None
            raise
        if not created.value.id:
            return 0.5  # an answer without the job: list again rather than guess
        await claim.write_note(CreateNote(mine.sent_at, rec.id, created.value.id))
        rec.job_id, rec.create_sent_at = created.value.id, None
        return StepResult(response=created, message="created job")

    async def save_secrets(self) -> StepResult:
        """Validate the caller's credentials with Graph, then save them; skipped without any."""
        if not self.record.has_credentials:
            return StepResult(Outcome.SKIPPED, message="no credentials in the request")
        credentials = await self.deps.store.credentials(self.record.id)
        if credentials is None:
            raise WorkflowFailed(
                "the request's credentials are no longer stored (expired?); submit it again",
                code="CredentialsMissing",
            )
        pairs = [{"key": c.key, "value": c.value.get_secret_value()} for c in credentials]
        job_id = self._job_id()
        try:
            await self.calls.call(
                Step.SAVE_SECRETS,
                CallKind.WRITE,
                lambda crid: self.graph.validate_credentials(self.sp, job_id, pairs, crid),
            )
        except GraphError as e:
            if e.status == 400:
                raise CredentialsRejected(
                    f"the target application rejected the credentials: {e.code}"
                    + (f": {e.message}" if e.message else ""),
                    graph_status=e.status,
                    graph_request_id=e.request_id,
                ) from e
            raise
        saved = await self.calls.call(
            Step.SAVE_SECRETS,
            CallKind.WRITE,
            lambda crid: self.graph.put_secrets(self.sp, pairs, crid),
        )
        return StepResult(response=saved, message=f"validated and saved {len(pairs)} secrets")

    async def start_job(self) -> StepResult:
        """Start the job unless it already runs (Graph warns against repeated starts)."""
        if not self.record.start:
            return StepResult(Outcome.SKIPPED, message="start=false in the request")
        job_id = self._job_id()
        current = await self.calls.call(
            Step.START_JOB, CallKind.READ, lambda crid: self.graph.get_job(self.sp, job_id, crid)
        )
        schedule, status = current.value.schedule_state, current.value.status_code
        if schedule == "Active" and status not in {"Paused", "Quarantine"}:
            return StepResult(Outcome.SKIPPED, current, f"already {schedule}/{status}")
        started = await self.calls.call(
            Step.START_JOB, CallKind.WRITE, lambda crid: self.graph.start_job(self.sp, job_id, crid)
        )
        return StepResult(response=started, message="started")

    async def verify(self) -> StepResult:
        """Watch the started job for ``verify_settle_s`` and fail on any failure signal.

        Every signal Graph gives counts (:func:`workers.graph.health.assess`): a quarantine
        (whatever ``status.code`` says), failing cycles, a Disabled or Paused schedule. A first
        cycle that finished succeeds at once; otherwise a job that is started and showed no
        failure signal in the window succeeds with a history that says its first cycle is not
        finished yet (a first cycle may take hours; the health watch keeps looking). A job
        whose schedule is not Active by ``verify_timeout_s`` fails ``JobNotStarted``."""
        if not self.record.start:
            return StepResult(Outcome.SKIPPED, message="not started on request")
        settings = self.deps.settings
        started_at = next(
            (h.at for h in reversed(self.record.history) if h.step is Step.START_JOB),
            utcnow(),
        )
        deadline = started_at + timedelta(seconds=settings.verify_timeout_s)
        window = min(settings.verify_settle_s, settings.verify_timeout_s)
        window_end = started_at + timedelta(seconds=window)
        job_id = self._job_id()
        while True:
            current = await self.calls.call(
                Step.VERIFY, CallKind.READ, lambda crid: self.graph.get_job(self.sp, job_id, crid)
            )
            job = current.value
            verdict = assess(job)
            if verdict.health is Health.QUARANTINED:
                raise _quarantined(current, verdict.reason)
            if verdict.health is Health.FAILING:
                raise _failing(current, verdict.reason)
            schedule, status = job.schedule_state, job.status_code
            if verdict.health is Health.HEALTHY and first_cycle_finished(job):
                last = job.status.last_execution
                ended = last.time_ended.isoformat() if last and last.time_ended else "?"
                return StepResult(
                    response=current,
                    message=f"job is Active; its first cycle finished "
                    f"({last.state if last else '?'} at {ended})",
                )
            now = utcnow()
            running = schedule == "Active" and verdict.health not in _STOPPED
            if running and now >= window_end:
                return StepResult(
                    response=current,
                    message=f"job is started (schedule Active, status {status or '?'}) and "
                    f"showed no failure signal for {window:g}s; its first cycle is not "
                    "finished yet (the health watch keeps looking)",
                )
            if now >= deadline:
                raise JobNotStarted(
                    f"job {job_id} is {schedule or '?'}/{status or '?'} "
                    f"{settings.verify_timeout_s:g}s after start: {verdict.reason}",
                    graph_status=current.status,
                    graph_request_id=current.request_id,
                    details={"health": verdict.health.value},
                )
            await self.calls.wait(
                settings.verify_poll_s, f"job is {schedule}/{status}: {verdict.reason}"
            )

    def _job_id(self) -> str:
        assert self.record.job_id is not None
        return self.record.job_id


_STOPPED = frozenset({Health.PAUSED, Health.DISABLED})


def _quarantined(current: GraphResponse[SynchronizationJob], reason: str) -> JobQuarantined:
    quarantine = current.value.status.quarantine
    error = quarantine.error if quarantine else None
    return JobQuarantined(
        f"the job is {reason} (status.code {current.value.status_code or '?'})",
        graph_status=current.status,
        graph_request_id=current.request_id,
        details={
            "reason": (quarantine.reason if quarantine else None) or "Unknown",
            "statusCode": current.value.status_code,
            "errorCode": error.code if error else None,
            "tenantActionable": error.tenant_actionable if error else None,
        },
    )


def _failing(current: GraphResponse[SynchronizationJob], reason: str) -> JobFailing:
    status = current.value.status
    last = status.last_execution
    error = last.error if last else None
    return JobFailing(
        f"the job's cycles fail: {reason}",
        graph_status=current.status,
        graph_request_id=current.request_id,
        details={
            "lastExecutionState": last.state if last else None,
            "countSuccessiveCompleteFailures": status.count_successive_complete_failures,
            "errorCode": error.code if error else None,
            "tenantActionable": error.tenant_actionable if error else None,
        },
    )
