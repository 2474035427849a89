"""The workflow's five steps, each safe to run twice.

Each step checks Graph (or the record) before it changes anything and returns a
:class:`StepResult` for the history; :mod:`workers.workflow.run` runs them in order, records their
outcomes and turns failures into a final state. The rules are in docs/workflow.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from service.core.errors import (
    CredentialsRejected,
    GraphError,
    TemplateAmbiguous,
    TemplateNotFound,
    WorkflowFailed,
)
from service.core.models import Outcome, Record, Step
from workers.graph.models import SynchronizationJob
from workers.workflow.calls import CallRunner
from workers.workflow.create import CreateJob
from workers.workflow.deps import Deps as Deps
from workers.workflow.deps import StepResult as StepResult
from workers.workflow.retry import CallKind
from workers.workflow.scope import sync_all_secret
from workers.workflow.verify import VerifyJob

#: ``cycles_seen`` for a job that showed no cycle before its start.
NO_CYCLE = datetime(1, 1, 1, tzinfo=UTC)


class Steps(CreateJob, VerifyJob):
    """The steps of one run of one request, sharing its record and call runner."""

    def __init__(self, deps: Deps, record: Record, calls: CallRunner) -> None:
        self.deps = deps
        self.record = record
        self.calls = calls
        self.graph = deps.graph

    def table(self) -> dict[Step, Callable[[], Awaitable[StepResult]]]:
        """Each step's coroutine, by step."""
        return {
            Step.RESOLVE_TEMPLATE: self.resolve_template,
            Step.CREATE_JOB: self.create_noting_cycle,
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
        """Start the job unless it already runs (Graph warns against repeated starts).

        A job this run created and whose create answer showed it not started (Graph creates
        jobs Disabled) is started without a GET first: the answer is the job (its last cycle,
        none, is what verify takes for old news), and nothing else starts it while this request
        holds the principal's in-flight slot. Any other job (adopted, or created by an earlier
        run of the request) is read first."""
        if not self.record.start:
            return StepResult(Outcome.SKIPPED, message="start=false in the request")
        job_id = self._job_id()
        job = self.created
        if job is None or job.id != job_id or job.schedule_state == "Active":
            # Not this run's own new, not yet started job: ask Graph what it is now.
            current = await self.calls.call(
                Step.START_JOB,
                CallKind.READ,
                lambda crid: self.graph.get_job(self.sp, job_id, crid),
            )
            schedule, status = current.value.schedule_state, current.value.status_code
            if schedule == "Active" and status not in {"Paused", "Quarantine"}:
                return StepResult(Outcome.SKIPPED, current, f"already {schedule}/{status}")
            job = current.value
        await self.note_cycle(Step.START_JOB, job)
        started = await self.calls.call(
            Step.START_JOB, CallKind.WRITE, lambda crid: self.graph.start_job(self.sp, job_id, crid)
        )
        return StepResult(response=started, message="started")

    async def create_noting_cycle(self) -> StepResult:
        """create_job; for a job it made, also the reading start_job's POST will go by (the
        create answer's: no cycle), saved with the step's line instead of on its own."""
        result = await self.create_job()
        if self.created is not None and self.record.start:
            self._note(Step.START_JOB, self.created)
        return result

    async def note_cycle(self, step: Step, job: SynchronizationJob) -> None:
        """Right before ``step`` POSTs a start or restart: remember the last cycle the job shows
        (verify takes it and older ones for old news). The first run's reading is kept and
        saved before the POST: a run that repeats the step after a crash would read the cycle
        the lost POST started, which is this request's own."""
        if self._note(step, job):
            await self.deps.store.save(self.record)

    def _note(self, step: Step, job: SynchronizationJob) -> bool:
        """Keep ``job``'s last cycle as ``step``'s reading unless one is kept already."""
        if step.value in self.record.cycles_seen:
            return False
        last = job.status.last_execution
        began = last.time_began if last is not None and last.time_began is not None else None
        self.record.cycles_seen[step.value] = began or NO_CYCLE
        return True

    def _job_id(self) -> str:
        assert self.record.job_id is not None
        return self.record.job_id
