"""The create_job step: adopt the principal's job for the resolved template, or create it once.

The list-decide-POST-record section runs under the claim on the RESOLVED (principal, template)
(:mod:`workers.workflow.claim`), so concurrent requests, whatever templateId they sent, never
both POST. A create whose answer was not seen (lost answer, 5xx, a holder killed mid-POST)
leaves a note that makes every run poll Graph's job list with backoff for up to
``create_settle_s`` (default 5 min: replication "might take several minutes") before another
POST. The trade-off: a POST that truly made nothing costs that wait once; a replica slower than
the budget could still let a second POST through.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog

from service.core.errors import GraphError, RetryBudgetExhausted
from service.core.fields import utcnow
from service.core.models import Outcome, Record, Step
from workers.graph.client import GraphClient
from workers.graph.models import SynchronizationJob
from workers.graph.response import GraphResponse
from workers.workflow.calls import Ambiguous, CallRunner, CancelRequested, Defer
from workers.workflow.claim import CreateNote, JobClaim, LeaseLost
from workers.workflow.deps import Deps, StepResult
from workers.workflow.retry import CallKind

log = structlog.get_logger("workers.workflow.create")


class CreateJob:
    """The create_job step, mixed into :class:`workers.workflow.steps.Steps`."""

    deps: Deps
    record: Record
    calls: CallRunner
    graph: GraphClient
    #: The job as Graph's answer to this run's own create described it (None: adopted, or
    #: created by an earlier run): start_job needs no GET of a job this run just saw made.
    created: SynchronizationJob | None = None

    @property
    def sp(self) -> str:
        """The principal's id (set by instantiate_app for a request naming a gallery app)."""
        return self.record.service_principal_id

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
            except LeaseLost:  # the lease lapsed before the POST: start over under a new one
                outcome = 0.2, "the job's create claim lapsed"
            finally:
                await claim.release()
            if isinstance(outcome, StepResult):
                return outcome
            await self.calls.wait(*outcome)

    async def _create_holding(self, claim: JobClaim) -> StepResult | tuple[float, str]:
        """Under the claim: the result, or how long to wait before listing again and why."""
        rec, settings = self.record, self.deps.settings
        template = rec.template_id
        assert template is not None
        existing, listed = await self._find_job()
        if existing is not None:
            rec.job_id, rec.create_sent_at = existing.id, None
            return StepResult(Outcome.ADOPTED, listed, "adopted existing job")
        note = claim.seen_note  # read with the lease: only a holder writes it
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
            last = max(sent)
            elapsed = (utcnow() - last).total_seconds()
            left = settings.create_settle_s - elapsed
            if left > 0:
                # Poll until consistent: list again after half the time waited so far (1 s,
                # then growing), at most create_poll_cap_s, never past the settle budget.
                wait = max(0.1, min(settings.create_poll_cap_s, max(1.0, elapsed / 2), left))
                return wait, _settling(last, settings.create_settle_s)
        mine: CreateNote | None = None

        async def post(crid: str) -> GraphResponse[SynchronizationJob]:
            # The note is written when the POST is about to go out, after the throttle gave
            # its slot: a run stopped before that (Redis lost in the throttle, a long wait
            # deferred) leaves no note that would make the next run wait out the settle budget
            # for a create that was never sent.
            nonlocal mine
            # the note and the record's sentAt saved before the POST: a crash now is remembered
            mine = await claim.save_noted(self.deps.store, rec, CreateNote(utcnow(), rec.id))
            return await self.graph.create_job(self.sp, template, crid)

        try:
            created = await self.calls.call(Step.CREATE_JOB, CallKind.CREATE, post)
        except Ambiguous as e:
            # made or not: list again, under the settle rule above
            cause = e.cause
            log.info(
                "graph_create_ambiguous",
                graph_status=cause.status or None,
                graph_code=cause.code,
                graph_request_id=cause.request_id,
                client_request_id=cause.client_request_id,
                settle_s=settings.create_settle_s,
            )
            return 0.5, f"the create POST was answered {cause.describe()}: made or not?"
        except (GraphError, RetryBudgetExhausted, Defer, CancelRequested):
            # A clear refusal, or the POST never went out (throttle or lag wait): nothing made.
            if mine is not None:
                await claim.drop_note(mine)
            rec.create_sent_at = None
            raise
        assert mine is not None  # post() ran: it gave the answer
        if not created.value.id:
            # an answer without the job: list again rather than guess
            return 0.5, "the create POST's answer names no job"
        release = await claim.complete(CreateNote(mine.sent_at, rec.id, created.value.id))
        rec.job_id, rec.create_sent_at = created.value.id, None
        self.created = created.value
        return StepResult(response=created, message="created job", release=release)


def _settling(sent_at: datetime, settle_s: float) -> str:
    """The history's "still waiting" line after a create whose answer was not seen: bounded,
    and saying until when (an operator can tell a settle wait from a hung request)."""
    until = sent_at + timedelta(seconds=settle_s)
    return (
        f"an earlier create (sent {_hms(sent_at)}, its answer not seen) is not in Graph's job "
        f"list yet; listing again until {_hms(until)} (PROVISIONER_CREATE_SETTLE_S "
        f"{settle_s:g}s), then creating"
    )


def _hms(moment: datetime) -> str:
    return moment.strftime("%H:%M:%SZ")
