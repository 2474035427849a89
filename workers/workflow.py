"""The provisioning workflow: resolve_template -> create_job -> save_secrets -> start_job -> verify.

arq delivers a job at least once, so every step is safe to run twice: it checks Graph (or the
record) before it changes anything, and records its outcome, Graph's request-id and status in
the record's history before the next step starts. A run resumes at the first step without a
completed outcome; a crash anywhere costs at most a repeated read.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import structlog

from service.config import Settings
from service.errors import (
    CredentialsRejected,
    GraphError,
    GraphRequestFailed,
    JobNotStarted,
    JobQuarantined,
    RetryBudgetExhausted,
    TemplateAmbiguous,
    TemplateNotFound,
    TokenError,
    WorkflowFailed,
)
from service.models import ErrorInfo, HistoryEntry, Outcome, Record, State, Step, utcnow
from service.store import Store
from service.tracing import span
from workers.calls import Ambiguous, CallRunner, Defer, monotonic_ms
from workers.graph import GraphClient, GraphResponse
from workers.metrics import WorkerMetrics
from workers.retry import CallKind
from workers.throttle import Throttle

log = structlog.get_logger("workers.workflow")


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
    response: GraphResponse | None = None
    message: str | None = None


class Run:
    """One execution of the workflow for one request (one arq job try)."""

    def __init__(self, deps: Deps, record: Record) -> None:
        self.deps = deps
        self.record = record
        self.sp = record.service_principal_id
        self.calls = CallRunner(deps.settings, record, deps.throttle, deps.stopping, deps.metrics)
        self.graph = deps.graph
        self._steps: dict[Step, Callable[[], Awaitable[StepResult]]] = {
            Step.RESOLVE_TEMPLATE: self.resolve_template,
            Step.CREATE_JOB: self.create_job,
            Step.SAVE_SECRETS: self.save_secrets,
            Step.START_JOB: self.start_job,
            Step.VERIFY: self.verify,
        }

    # steps --------------------------------------------------------------------------------
    async def resolve_template(self) -> StepResult:
        """Pick the template: the requested one if listed, else the only or the default one."""
        templates, resp = await self.calls.call(
            Step.RESOLVE_TEMPLATE,
            CallKind.LOOKUP,
            lambda crid: self.graph.list_templates(self.sp, crid),
        )
        ids = [str(t.get("id")) for t in templates]
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
            defaults = [str(t.get("id")) for t in templates if t.get("default") is True]
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

    async def _find_job(self) -> tuple[dict[str, Any] | None, GraphResponse]:
        jobs, resp = await self.calls.call(
            Step.CREATE_JOB, CallKind.LOOKUP, lambda crid: self.graph.list_jobs(self.sp, crid)
        )
        same = [j for j in jobs if j.get("templateId") == self.record.template_id]
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
                rec.job_id, rec.create_sent_at = str(existing["id"]), None
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
            body = created.body if isinstance(created.body, dict) else {}
            if not body.get("id"):
                continue  # an answer without the job: list again rather than guess
            rec.job_id, rec.create_sent_at = str(body["id"]), None
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
        schedule, status = _job_state(current.body)
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
            schedule, status = _job_state(current.body)
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

    # the run ------------------------------------------------------------------------------
    async def execute(self) -> None:
        """Run the remaining steps; record success, failure, cancellation or a deferral."""
        rec = self.record
        for step in Step:
            if rec.done(step):
                continue
            if await self.deps.store.cancel_requested(rec.id):
                await self._finish(State.CANCELLED, Outcome.CANCELLED, step, "cancelled on request")
                return
            rec.step = step
            began = time.monotonic()
            try:
                self.calls.checkpoint()
                with span(f"step {step.value}", request_id=rec.id, attempt=rec.attempts):
                    result = await self._steps[step]()
            except Defer as d:
                last = rec.history[-1] if rec.history else None
                if last is not None and last.step is step and last.outcome is Outcome.RETRYING:
                    rec.history.pop()  # one "still retrying" line per step, kept current
                self._history(step, Outcome.RETRYING, began, message=d.reason)
                await self.deps.store.save(rec)
                raise
            except GraphError as e:
                await self.fail(step, began, _graph_failure(e))
                return
            except WorkflowFailed as e:
                await self.fail(step, began, e)
                return
            except TokenError as e:
                if e.error == "authority_unreachable":
                    raise Defer(5.0, "token endpoint unreachable") from e
                await self.fail(step, began, _token_failure(e))
                return
            self._history(step, result.outcome, began, result.response, result.message)
            await self.deps.store.save(rec)
            if step is Step.SAVE_SECRETS and result.outcome is Outcome.SUCCEEDED:
                await self.deps.store.forget_credentials(rec.id)
        await self._finish(State.SUCCEEDED, None, None, None)

    def _history(
        self,
        step: Step | None,
        outcome: Outcome,
        began: float | None = None,
        response: GraphResponse | None = None,
        message: str | None = None,
        *,
        graph_status: int | None = None,
        graph_request_id: str | None = None,
    ) -> None:
        entry = HistoryEntry(
            step=step,
            outcome=outcome,
            at=utcnow(),
            attempt=self.record.attempts,
            duration_ms=None if began is None else monotonic_ms(began),
            graph_status=response.status if response else graph_status,
            graph_request_id=response.request_id if response else graph_request_id,
            client_request_id=response.client_request_id if response else None,
            message=message,
        )
        self.record.add(entry)
        if step is not None and began is not None:
            self.deps.metrics.step(step.value, outcome.value, time.monotonic() - began)
        log.info(
            "workflow_step",
            step=step.value if step else None,
            outcome=outcome.value,
            job_id=self.record.job_id,
            template_id=self.record.template_id,
            duration_ms=entry.duration_ms,
            graph_status=entry.graph_status,
            graph_request_id=entry.graph_request_id,
            client_request_id=entry.client_request_id,
            detail=message,
        )

    async def fail(self, step: Step, began: float, error: WorkflowFailed) -> None:
        """End the request ``failed`` with the error's code, message and Graph ids."""
        self.record.error = ErrorInfo(
            code=error.code,
            message=error.message,
            graph_status=error.graph_status,
            graph_request_id=error.graph_request_id,
            details=error.details,
        )
        self._history(
            step,
            Outcome.FAILED,
            began,
            message=f"{error.code}: {error.message}",
            graph_status=error.graph_status,
            graph_request_id=error.graph_request_id,
        )
        await self._finish(State.FAILED, None, step, None)

    async def _finish(
        self, state: State, outcome: Outcome | None, step: Step | None, message: str | None
    ) -> None:
        if outcome is not None:
            self._history(step, outcome, message=message)
        self.record.state = state
        self.record.updated_at = utcnow()
        await self.deps.store.save(self.record)
        self.deps.metrics.finished(
            state.value, self.record.error.code if self.record.error else None
        )
        log.info(
            "workflow_finished", state=state.value, error=getattr(self.record.error, "code", None)
        )


async def run_request(deps: Deps, request_id: str, job_try: int) -> None:
    """Run (or resume) the workflow of one request; raises :class:`Defer` to be re-queued."""
    store = deps.store
    record = await store.get(request_id)
    if record is None or record.state.terminal:
        log.info("workflow_skipped", reason="unknown or finished request")
        return
    now = utcnow()
    record.attempts += 1
    if record.retry_until is None:
        record.retry_until = now + timedelta(seconds=deps.settings.retry_budget_s)
    structlog.contextvars.bind_contextvars(
        provisioning_request_id=record.id,
        service_principal_id=record.service_principal_id,
        attempt=record.attempts,
        job_try=job_try,
    )
    run = Run(deps, record)
    if now > record.retry_until:
        await run.fail(
            record.step or Step.RESOLVE_TEMPLATE,
            time.monotonic(),
            RetryBudgetExhausted("the request's retry budget was spent before it could finish"),
        )
        return
    record.state = State.RUNNING
    await store.save(record)
    await run.execute()


def _job_state(body: Any) -> tuple[str, str]:
    body = body if isinstance(body, dict) else {}
    schedule = body.get("schedule") if isinstance(body.get("schedule"), dict) else {}
    status = body.get("status") if isinstance(body.get("status"), dict) else {}
    return str((schedule or {}).get("state") or ""), str((status or {}).get("code") or "")


def _quarantined(current: GraphResponse) -> JobQuarantined:
    status = current.body.get("status", {}) if isinstance(current.body, dict) else {}
    quarantine = status.get("quarantine") or {}
    error = quarantine.get("error") or {}
    reason = quarantine.get("reason") or "Unknown"
    detail = error.get("message") or "no message"
    return JobQuarantined(
        f"the job went to quarantine ({reason}): {error.get('code') or 'UnknownError'}: {detail}",
        graph_status=current.status,
        graph_request_id=current.request_id,
        details={
            "reason": reason,
            "errorCode": error.get("code"),
            "tenantActionable": error.get("tenantActionable"),
        },
    )


def _graph_failure(error: GraphError) -> WorkflowFailed:
    return GraphRequestFailed(
        f"Graph answered {error.status} {error.code}"
        + (f": {error.message}" if error.message else ""),
        code=error.code or "GraphRequestFailed",
        graph_status=error.status,
        graph_request_id=error.request_id,
    )


def _token_failure(error: TokenError) -> WorkflowFailed:
    codes = ", ".join(f"AADSTS{c}" for c in error.codes)
    return WorkflowFailed(
        f"Entra ID refused the service's credentials ({error.error}"
        + (f", {codes}" if codes else "")
        + "): check PROVISIONER_CLIENT_ID and its secret or certificate",
        code="TokenAcquisitionFailed",
    )
