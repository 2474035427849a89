"""The provisioning workflow: resolve_template -> create_job -> save_secrets -> start_job -> verify.

A request naming a gallery app runs instantiate_app and assign first and map_attributes after
save_secrets (:mod:`workers.workflow.onboarding`); for other requests those steps are skipped.

arq delivers a job at least once, so every step is safe to run twice: it checks Graph (or the
record) before it changes anything, and records its outcome, Graph's request-id and status in
the record's history before the next step starts. A run resumes at the first step without a
completed outcome; a crash anywhere costs at most a repeated read. The steps themselves are in
:mod:`workers.workflow.steps`.
"""

from __future__ import annotations

import time
from datetime import timedelta
from functools import partial
from typing import Any

import structlog

from service.core.actions import steps_for
from service.core.errors import (
    GraphFailure,
    RetryBudgetExhausted,
    TokenError,
    WorkflowFailed,
)
from service.core.fields import utcnow
from service.core.models import ErrorInfo, HistoryEntry, Outcome, Record, State, Step
from service.core.store_save import Release
from service.core.tracing import span
from workers.graph.permissions import token_lacks, unknown_error_hint
from workers.graph.response import GraphResponse
from workers.watch.check import register_job
from workers.workflow.actions import action_table
from workers.workflow.calls import CallRunner, CancelRequested, Defer, monotonic_ms
from workers.workflow.failures import cancel_message, graph_failure, token_failure
from workers.workflow.onboarding import onboarding_table
from workers.workflow.steps import Deps, StepResult, Steps

__all__ = ["Defer", "Deps", "Run", "StepResult", "run_request"]

log = structlog.get_logger("workers.workflow.run")
#: Steps that only read Graph: as the last step the request uses, the final save carries
#: their line (a crash before it repeats the read), so no save of their own. Followed by a
#: smoke test, verify keeps its save: a crash in the smoke test must not repeat verify's
#: window. resolve_template keeps its save: the template it chose is a step boundary
#: operators (and the chaos tests) look for.
_READS = frozenset({Step.VERIFY})


class Run:
    """One execution of the workflow for one request (one arq job try)."""

    def __init__(self, deps: Deps, record: Record) -> None:
        self.deps = deps
        self.record = record
        self.calls = CallRunner(
            deps.settings,
            record,
            deps.throttle,
            deps.stopping,
            deps.metrics,
            cancelled=lambda: deps.store.cancel_requested(record.id),
        )
        steps = Steps(deps, record, self.calls)
        # issue 12: the lifecycle actions' steps; the action picks the sequence (steps_for)
        self._steps = {**steps.table(), **onboarding_table(steps), **action_table(steps)}
        self._permissions_checked = False

    async def execute(self, cancelled: bool) -> None:
        """Run the remaining steps; record success, failure, cancellation or a deferral.

        ``cancelled`` is the cancel flag as the save just before this call read it; each
        step's save reads it again, so a step boundary costs no extra round trip. A step that
        changed nothing outside (verify's reads, a skip, a step the request does not use) is
        not saved on its own: the next save (after a change, the final one) carries its
        history line, and a crash before it costs a repeated read, as anywhere else."""
        rec = self.record
        for step in steps_for(rec.action):
            if rec.done(step):
                continue
            if cancelled:
                await self._finish(State.CANCELLED, Outcome.CANCELLED, step, cancel_message(rec))
                return
            ran = await self._run_step(step)
            if ran is None:
                return
            cancelled = await self._record_step(step, *ran, cancelled)
        await self._finish(State.SUCCEEDED, None, None, None)

    async def _run_step(self, step: Step) -> tuple[StepResult, float] | None:
        """Run one step: its result and when it began, or None when the request ended with it
        (failed or cancelled); a :class:`Defer` raised on after its "retrying" line is saved."""
        rec = self.record
        rec.step = step
        began = time.monotonic()
        try:
            self.calls.checkpoint()
            await self._check_permissions()
            with span(f"step {step.value}", request_id=rec.id, attempt=rec.attempts):
                result = await self._steps[step]()
        except CancelRequested:
            await self._finish(State.CANCELLED, Outcome.CANCELLED, step, cancel_message(rec))
            return None
        except Defer as d:
            await self._retrying(step, began, d.reason)
            raise
        except GraphFailure as e:
            await self.fail(step, began, await self._graph_failure(e))
            return None
        except WorkflowFailed as e:
            await self.fail(step, began, e)
            return None
        except TokenError as e:
            if e.error == "authority_unreachable":
                raise Defer(5.0, "token endpoint unreachable") from e
            await self.fail(step, began, token_failure(e))
            return None
        return result, began

    async def _record_step(
        self, step: Step, result: StepResult, began: float, cancelled: bool
    ) -> bool:
        """The step's history line, saved unless nothing changed outside; the cancel flag."""
        if result.silent:
            return cancelled
        self._history(step, result.outcome, began, result.response, result.message)
        last = self.record.smoke_test is None  # verify is followed by the smoke test only
        if (step in _READS and last) or result.outcome is Outcome.SKIPPED:
            return cancelled  # nothing changed outside: the next save carries the line
        cancelled = await self.save_taking_ahead(step, release=result.release)
        if step is Step.SAVE_SECRETS and result.outcome is Outcome.SUCCEEDED:
            await self.deps.store.forget_credentials(self.record.id)
        return cancelled

    async def save_taking_ahead(self, after: Step | None, release: Release | None = None) -> bool:
        """Save the record at the boundary after ``after`` (None: before the first step) and,
        when a step that calls Graph follows, take the throttle's slot for its first call in
        the same round trip (docs/benchmarks.md, seventh round); the cancel flag.

        Only a provisioning run that starts its job takes ahead: each of its steps that runs
        begins with a Graph call, so the slot is used (one taken for a step that then waits,
        say for the create claim, is stale by then and given up for a new one)."""
        rec = self.record
        ahead = None
        if rec.action == "provision" and rec.start and self._steps_left(after):
            ahead = self.calls.take_ahead()
        then = None if ahead is None else ahead.then
        cancelled = await self.deps.store.save(rec, release=release, then=then)
        self.calls.took_ahead(ahead)
        return cancelled

    def _steps_left(self, after: Step | None) -> bool:
        steps = steps_for(self.record.action)
        rest = steps if after is None else steps[steps.index(after) + 1 :]
        return any(not self.record.done(step) for step in rest)

    async def _retrying(self, step: Step, began: float, reason: str) -> None:
        """Record and save a deferred step's "retrying" line: one per step, kept current."""
        rec = self.record
        last = rec.history[-1] if rec.history else None
        if last is not None and last.step is step and last.outcome is Outcome.RETRYING:
            rec.history.pop()
        self._history(step, Outcome.RETRYING, began, message=reason)
        await self.deps.store.save(rec)

    async def _check_permissions(self) -> None:
        """Once per run, before the first Graph call: fail fast with GraphPermissionMissing
        when the token cannot perform a step this request will call (workers.graph.permissions;
        else a missing permission looks like replication lag for the whole consistency
        budget)."""
        if self._permissions_checked:
            return
        roles = await self.deps.graph.token_roles()
        self._permissions_checked = True
        problem = token_lacks(roles, self.record)
        if problem is not None:
            # The next request gets a fresh token: a permission granted meanwhile counts.
            await self.deps.graph.refresh_token()
            raise problem

    async def _graph_failure(self, error: GraphFailure) -> WorkflowFailed:
        if error.status == 401 and error.code == "UnknownError":
            # Only raised once the replication-lag budget is spent (workers.workflow.retry).
            roles = await self.deps.graph.token_roles()
            return unknown_error_hint(roles, self.record.service_principal_id, error)
        return graph_failure(error)

    def _history(
        self,
        step: Step | None,
        outcome: Outcome,
        began: float | None = None,
        response: GraphResponse[Any] | None = None,
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
        watch = partial(register_job, self.deps, self.record)  # saved with the end
        if await self.deps.store.save_final(self.record, self._cancelled_instead, watch):
            state = State.CANCELLED
        self.deps.metrics.finished(
            state.value, self.record.error.code if self.record.error else None
        )
        self.deps.metrics.action_finished(self.record.action, state.value)
        log.info(
            "workflow_finished", state=state.value, error=getattr(self.record.error, "code", None)
        )

    def _cancelled_instead(self, record: Record) -> None:
        """A cancel accepted before the final save wins over the outcome the run reached."""
        outcome = record.state.value
        record.state = State.CANCELLED
        record.error = None
        self._history(
            record.step, Outcome.CANCELLED, message=f"{cancel_message(record)} (run had {outcome})"
        )
        record.updated_at = utcnow()


async def run_request(deps: Deps, request_id: str, job_try: int, raw: bytes | None = None) -> None:
    """Run (or resume) the workflow of one request; raises :class:`Defer` to be re-queued.
    ``raw``: the record as read when arq's job was picked up (None: read it now)."""
    store = deps.store
    record = Record.from_json(raw) if raw is not None else await store.get(request_id)
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
        caller=record.caller,
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
    await run.execute(await run.save_taking_ahead(None))
