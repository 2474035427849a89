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
    JobNotStarted,
    JobQuarantined,
    TemplateAmbiguous,
    TemplateNotFound,
    WorkflowFailed,
)
from service.core.models import Outcome, Record, Step, utcnow
from service.core.settings import Settings
from service.core.store import Store
from workers.graph.client import GraphClient, GraphResponse
from workers.graph.models import SynchronizationJob
from workers.metrics import WorkerMetrics
from workers.workflow.calls import Ambiguous, CallRunner
from workers.workflow.retry import CallKind
from workers.workflow.scope import sync_all_secret
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
    silent: bool = False  # a step the request does not use: no history line (onboarding)


class Steps:
    """The steps of one run of one request, sharing its record and call runner."""

    def __init__(self, deps: Deps, record: Record, calls: CallRunner) -> None:
        self.deps = deps
        self.record = record
        self.calls = calls
        self.graph = deps.graph

    @property
    def sp(self) -> str:
        """The principal's id (set by instantiate_app for a request naming a gallery app)."""
        return self.record.service_principal_id

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
        """Adopt the principal's job for the template, or create it; never POST twice blindly."""
        assert self.record.template_id is not None
        template = self.record.template_id
        rec = self.record
        settle = timedelta(seconds=self.deps.settings.create_settle_s)
        while True:
            existing, listed = await self._find_job()
            if existing is not None:
                rec.job_id, rec.create_sent_at = existing.id, None
                return StepResult(Outcome.ADOPTED, listed, "adopted existing job")
            if rec.create_sent_at is not None and utcnow() < rec.create_sent_at + settle:
                # An earlier POST's outcome was never seen (lost answer, crash): give Graph's
                # list time to show that job before making another.
                left = (rec.create_sent_at + settle - utcnow()).total_seconds()
                await self.calls.wait(min(2.0, max(0.1, left)), "earlier create not listed yet")
                continue
            rec.create_sent_at = utcnow()
            await self.deps.store.save(rec)  # before the POST: a crash now is remembered
            try:
                created = await self.calls.call(
                    Step.CREATE_JOB,
                    CallKind.CREATE,
                    lambda crid: self.graph.create_job(self.sp, template, crid),
                )
            except Ambiguous:
                continue  # list again, under the settle rule above
            except GraphError:
                rec.create_sent_at = None  # a clear refusal: nothing was made
                raise
            if not created.value.id:
                continue  # an answer without the job: list again rather than guess
            rec.job_id, rec.create_sent_at = created.value.id, None
            return StepResult(response=created, message="created job")

    async def save_secrets(self) -> StepResult:
        """Validate the caller's credentials with Graph, then save them with the scope's
        ``SyncAll`` in one PUT; skipped when there is neither."""
        scope = sync_all_secret(self.record)
        if not self.record.has_credentials and scope is None:
            return StepResult(Outcome.SKIPPED, message="no credentials in the request")
        pairs: list[dict[str, str]] = []
        if self.record.has_credentials:
            credentials = await self.deps.store.credentials(self.record.id)
            if credentials is None:
                raise WorkflowFailed(
                    "the request's credentials are no longer stored (expired?); submit it again",
                    code="CredentialsMissing",
                )
            pairs = [{"key": c.key, "value": c.value.get_secret_value()} for c in credentials]
            await self._validate(pairs)
        saved = await self.calls.call(
            Step.SAVE_SECRETS,
            CallKind.WRITE,
            lambda crid: self.graph.put_secrets(self.sp, pairs + ([scope] if scope else []), crid),
        )
        what = f"validated and saved {len(pairs)} secrets" if pairs else "saved no credentials"
        return StepResult(
            response=saved, message=what + (f", SyncAll {scope['value']}" if scope else "")
        )

    async def _validate(self, pairs: list[dict[str, str]]) -> None:
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
        """Poll the job until it runs, or report its quarantine, within the verify window.

        Success is ``status.code == Active``, or a job that stayed scheduled (``schedule.state
        == Active``) and out of quarantine for ``verify_settle_s``: bad credentials show up as
        quarantine within seconds, while a first cycle may take hours."""
        if not self.record.start:
            return StepResult(Outcome.SKIPPED, message="not started on request")
        settings = self.deps.settings
        started_at = next(
            (h.at for h in reversed(self.record.history) if h.step is Step.START_JOB),
            utcnow(),
        )
        window_end = started_at + timedelta(seconds=settings.verify_timeout_s)
        settle_end = started_at + timedelta(
            seconds=min(settings.verify_settle_s, settings.verify_timeout_s)
        )
        job_id = self._job_id()
        while True:
            current = await self.calls.call(
                Step.VERIFY, CallKind.READ, lambda crid: self.graph.get_job(self.sp, job_id, crid)
            )
            schedule, status = current.value.schedule_state, current.value.status_code
            if status == "Quarantine":
                raise _quarantined(current)
            if schedule == "Active" and status == "Active":
                return StepResult(response=current, message="job is Active")
            now = utcnow()
            if schedule == "Active" and now >= settle_end:
                # A first cycle can take hours on a big tenant: once the job has stayed
                # scheduled and out of quarantine for the settle time, it is running.
                return StepResult(
                    response=current,
                    message=f"job is scheduled; first cycle not finished (status {status})",
                )
            if now >= window_end:
                raise JobNotStarted(
                    f"job {job_id} is {schedule}/{status} "
                    f"{settings.verify_timeout_s:g}s after start",
                    graph_status=current.status,
                    graph_request_id=current.request_id,
                )
            await self.calls.wait(settings.verify_poll_s, f"job is {schedule}/{status}")

    def _job_id(self) -> str:
        assert self.record.job_id is not None
        return self.record.job_id


def _quarantined(current: GraphResponse[SynchronizationJob]) -> JobQuarantined:
    quarantine = current.value.status.quarantine
    error = quarantine.error if quarantine else None
    reason = (quarantine.reason if quarantine else None) or "Unknown"
    code = (error.code if error else None) or "UnknownError"
    detail = (error.message if error else None) or "no message"
    return JobQuarantined(
        f"the job went to quarantine ({reason}): {code}: {detail}",
        graph_status=current.status,
        graph_request_id=current.request_id,
        details={
            "reason": reason,
            "errorCode": error.code if error else None,
            "tenantActionable": error.tenant_actionable if error else None,
        },
    )
