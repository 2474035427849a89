"""The health watch: an arq cron job that GETs every due watched job and records its health.

Each tick (every ``PROVISIONER_WATCH_INTERVAL_S``, one worker per tick: the cron job is
``unique``) claims at most ``PROVISIONER_WATCH_MAX_CALLS_PER_S x interval`` due jobs from the
watch set, most overdue first, and spaces their calls evenly over the tick: the watch never
makes more than that many Graph calls a second whatever the number of jobs. Each call goes
through the workflow's :class:`~workers.workflow.calls.CallRunner`, so the tenant throttle, its
cool-downs and the retry table apply as to any other call. What a reading means is
:func:`workers.graph.health.assess`; what it changes is :mod:`workers.watch.rules`.

The Graph cost: ``jobs / last delay`` calls a second in steady state, e.g. 10,000 jobs every
6 h = 10,000 / 21,600 s = 0.46 calls/s (0.51 with the default 10 % jitter, which only ever
shortens a delay), below the default cap of 1 call/s. When more checks are due than the cap
allows (a burst of new jobs, each checked 1, 5, 15 and 60 min after its request), they wait
their turn: the cap wins over the schedule. A check that finds a cycle finished since the last
one also reads that cycle's provisioning logs (:mod:`workers.watch.last_cycle`) with the tick's
slots the jobs' GETs left over: the cap holds for those pages too.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

import structlog

from service.core.application_store import UNREAD, ApplicationStore, Unread, Update
from service.core.applications import (
    Application,
    ErrorView,
    ExecutionView,
    QuarantineView,
    Reading,
)
from service.core.cycles import LastCycle
from service.core.errors import GraphError, GraphFailure, TokenError, WorkflowFailed
from service.core.fields import utcnow
from service.core.models import Outcome, Record, State, Step
from service.core.store_save import Guarded
from workers.graph.health import assess
from workers.graph.models import SynchronizationError, SynchronizationJob
from workers.watch.auto_restart import AutoRestarter
from workers.watch.last_cycle import PageBudget, read_last_cycle, wants_read
from workers.watch.rules import (
    Result,
    Schedule,
    deprovisioned,
    missing,
    observed,
    registered,
    unreadable,
)
from workers.workflow.calls import CallRunner, Defer
from workers.workflow.retry import CallKind
from workers.workflow.steps import Deps

log = structlog.get_logger("workers.watch")
GONE = object()  # a 404: the job is not there


@dataclass(frozen=True, slots=True)
class Unreadable:
    error: str
    retry_in_s: float | None = None


@dataclass(frozen=True, slots=True)
class Tick:
    """What one tick did."""

    checked: int
    changed: int


def _error(error: SynchronizationError | None) -> ErrorView | None:
    if error is None:
        return None
    return ErrorView(
        code=error.code, message=error.message, tenant_actionable=error.tenant_actionable
    )


def reading_of(job: SynchronizationJob, *, expects_users: bool = False) -> Reading:
    """A job as Graph returned it, assessed, in the application view's shape."""
    verdict = assess(job, expects_users=expects_users)
    quarantine, last = job.status.quarantine, job.status.last_execution
    return Reading(
        health=verdict.health,
        reason=verdict.reason,
        schedule_state=job.schedule.state,
        status_code=job.status.code,
        quarantine=None
        if quarantine is None
        else QuarantineView(
            reason=quarantine.reason,
            since=quarantine.current_began,
            next_attempt=quarantine.next_attempt,
            error=_error(quarantine.error),
        ),
        last_execution=None
        if last is None
        else ExecutionView(
            state=last.state,
            began=last.time_began,
            ended=last.time_ended,
            entitled=last.count_entitled,
            error=_error(last.error),
        ),
    )


async def register_job(
    deps: Deps, record: Record, current: bytes | Unread | None = UNREAD
) -> Guarded | None:
    """The workflow's hook at a request's end: a request that ``succeeded`` with a job (created
    or adopted) puts the job under watch; a succeeded ``deprovision`` takes it off. Returns the
    application's writes, which the request's final save runs in the same script (prepared
    again from ``current``, the application the script found, if it was not as prepared): the
    end and the watch never disagree. A request that created its job guesses its principal has
    no application yet instead of reading it (one round trip less per new app; a wrong guess
    costs the script's answer and a second save)."""
    if record.state is not State.SUCCEEDED or not record.job_id or not deps.settings.watch_enabled:
        return None
    apps = ApplicationStore.of(deps.store)
    sp = record.service_principal_id
    if record.action == "deprovision":
        return await apps.prepare(
            sp, lambda app: deprovisioned(app, record, utcnow()).update, current=current
        )
    if current is UNREAD and _created_its_job(record):
        current = None
    schedule = Schedule.of(deps.settings)
    return await apps.prepare(
        sp,
        lambda app: registered(app, record, utcnow(), schedule).update,
        create=True,
        current=current,
    )


def _created_its_job(record: Record) -> bool:
    """Whether this request's create_job step made the job (not adopted one)."""
    return any(h.step is Step.CREATE_JOB and h.outcome is Outcome.SUCCEEDED for h in record.history)


class Watch:
    """One tick of the watch in one worker."""

    def __init__(
        self,
        deps: Deps,
        schedule: Schedule | None = None,
        restarter: AutoRestarter | None = None,
    ) -> None:
        self.deps = deps
        self.apps = ApplicationStore.of(deps.store)
        self.schedule = schedule or Schedule.of(deps.settings)
        on = deps.settings.auto_restart == "quarantine"
        self.restarter = restarter or (
            AutoRestarter(deps.store, deps.settings.auto_restart_max_per_day, metrics=deps.metrics)
            if on
            else None
        )

    async def tick(self) -> Tick:
        """Check the jobs that are due, within the call budget."""
        settings = self.deps.settings
        rate = settings.watch_max_calls_per_s
        quota = max(1, int(rate * settings.watch_interval_s))
        lease_ms = (settings.step_timeout_s * 2 + settings.watch_interval_s) * 1000
        due = await self.apps.claim_due(time.time() * 1000, quota, lease_ms)
        # the slots the jobs' GETs leave are the provisioning logs' (workers/watch/last_cycle.py)
        pages = PageBudget(time.monotonic(), rate, len(due), quota)
        changes = await asyncio.gather(
            *(self._paced(i / rate, sp, job_id, pages) for i, (sp, job_id) in enumerate(due))
        )
        return Tick(len(due), sum(1 for c in changes if c))

    async def _paced(self, delay_s: float, sp: str, job_id: str, pages: PageBudget) -> bool:
        await asyncio.sleep(delay_s)  # spreads the tick's calls evenly: the rate cap
        return await self.check(sp, job_id, pages)

    async def check(self, sp: str, job_id: str, pages: PageBudget | None = None) -> bool:
        """Read one job (and, after a new cycle, its provisioning logs within ``pages``) and
        record what it says; True when its health changed."""
        outcome = await self._read(sp, job_id)
        cycle: LastCycle | None = None
        if isinstance(outcome, SynchronizationJob):
            cycle = await self._last_cycle(sp, job_id, outcome, pages or PageBudget.unpaced())
        results: list[Result] = []
        gone = False

        def apply(app: Application) -> Update | None:
            job = app.job(job_id)
            if job is None or not job.watching:
                return None
            now = utcnow()
            if outcome is GONE:
                result = missing(app, job, now, self.schedule)
            elif isinstance(outcome, Unreadable):
                result = unreadable(app, job, outcome.error, outcome.retry_in_s, now, self.schedule)
            else:
                assert isinstance(outcome, SynchronizationJob)
                reading = reading_of(outcome, expects_users=job.expects_users)
                result = observed(app, job, reading, now, self.schedule)
                job.last_cycle = cycle or job.last_cycle
            results[:] = [result]
            return result.update

        app = await self.apps.update(sp, apply)
        if app is None or not results:
            await self.apps.forget(sp, job_id)  # no such application or job any more
            gone = True
        if isinstance(outcome, SynchronizationJob):
            await self._recover(sp, job_id, app)
        kind = "gone" if outcome is GONE else "error" if isinstance(outcome, Unreadable) else "read"
        self.deps.metrics.watch_check(kind)
        change = results[0].change if results else None
        if change is not None:
            self.deps.metrics.health_changed(
                change.from_.value if change.from_ else "", change.to.value
            )
            log.info(
                "application_health_changed",
                service_principal_id=sp,
                job_id=job_id,
                previous=change.from_,
                health=change.to,
                reason=change.reason,
            )
        elif isinstance(outcome, Unreadable) and not gone:
            log.info(
                "watch_check_unreadable",
                service_principal_id=sp,
                job_id=job_id,
                error=outcome.error,
            )
        return change is not None

    async def _recover(self, sp: str, job_id: str, app: Application | None) -> None:
        """The opt-in auto-restart of a quarantined job (workers/watch/auto_restart.py)."""
        watched = app.job(job_id) if app is not None else None
        if self.restarter is not None and watched is not None:
            await self.restarter.consider(sp, watched)

    def _calls(self, sp: str) -> CallRunner:
        """A run of its own for the call runner: its budget is short, a check is retried later."""
        settings = self.deps.settings
        record = Record(
            id=f"watch-{uuid.uuid4().hex}",
            service_principal_id=sp,
            attempts=1,
            retry_until=utcnow() + timedelta(seconds=min(30.0, settings.retry_budget_s)),
        )
        return CallRunner(
            settings, record, self.deps.throttle, self.deps.stopping, self.deps.metrics
        )

    async def _last_cycle(
        self, sp: str, job_id: str, job: SynchronizationJob, pages: PageBudget
    ) -> LastCycle | None:
        """The outcomes of the job's last cycle when the view has none for it yet."""
        app = await self.apps.get(sp)
        watched = app.job(job_id) if app is not None else None
        execution = reading_of(job).last_execution
        if watched is None or execution is None or not wants_read(watched.last_cycle, execution):
            return None
        return await read_last_cycle(self.deps.graph, self._calls(sp), job_id, execution, pages)

    async def _read(self, sp: str, job_id: str) -> SynchronizationJob | Unreadable | object:
        calls = self._calls(sp)
        try:
            resp = await calls.call(
                Step.VERIFY,
                CallKind.LOOKUP,  # a 404 is an answer here: the job is long made
                lambda crid: self.deps.graph.get_job(sp, job_id, crid),
            )
        except Defer as d:
            return Unreadable(d.reason, max(1.0, d.seconds))
        except GraphError as e:
            if e.status == 404:
                return GONE
            return Unreadable(f"{e.describe()}" + (f": {e.message}" if e.message else ""))
        except (GraphFailure, WorkflowFailed, TokenError) as e:
            return Unreadable(str(e))
        return resp.value
