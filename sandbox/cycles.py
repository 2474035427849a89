"""A started job's life in the sandbox: its cycles end on the clock, succeed or fail by the
principal's rules and secrets, and a configured quarantine lands; played lazily up to now
whenever the job is read. Pure (no aiohttp)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from sandbox.gallery import GalleryState
from sandbox.models import (
    CYCLE_ERROR,
    NO_ERROR,
    QUARANTINE_ERROR,
    ZERO_TIME,
    CycleRules,
    Job,
    example_quarantine,
    execution,
    iso,
)
from sandbox.provisioning_logs import ProvisioningLogs
from sandbox.vocabulary import QUARANTINE_MARKER, REJECT_MARKER

#: The size of the sandbox tenant's directory, for a job scoped to all users.
DIRECTORY_USERS = 25


class JobCycles:
    """The job clock of :class:`~sandbox.state.TenantState` (its base)."""

    _clock: Callable[[], float]
    _now: Callable[[], dt.datetime]
    secrets: dict[str, dict[str, str]]
    gallery: GalleryState
    logs: ProvisioningLogs

    def job(self, sp_id: str, job_id: str) -> Job:
        raise NotImplementedError

    def _run(self, sp_id: str, job_id: str, rules: CycleRules) -> Job:
        job = self.job(sp_id, job_id)
        now = self._clock()
        job.schedule_state = "Active"
        job.status_code = "NotRun"
        job.quarantine = None
        job.rules = rules
        job.began = self._now()
        job.cycle_began = now
        job.active_at = now + rules.first_cycle_s
        job.quarantine_at = (
            None if rules.quarantine_after_s is None else now + rules.quarantine_after_s
        )
        job.bad_credentials = self._secrets_bad(job.sp_id)
        if job.last_execution is None:
            job.last_execution = execution("Failed", ZERO_TIME, ZERO_TIME, dict(NO_ERROR))
        self._advance(job)
        return job

    def _wall(self, at: float) -> dt.datetime:
        """The wall-clock time of monotonic instant ``at``."""
        return self._now() - dt.timedelta(seconds=self._clock() - at)

    def _advance(self, job: Job) -> None:
        """Play the started job's events up to now, in order: cycles ending (every
        ``rules.cycle_s`` after the first), and the configured quarantine."""
        now = self._clock()
        while job.schedule_state == "Active" and job.quarantine is None:
            cycle_at, quarantine_at = job.active_at, job.quarantine_at
            due = [t for t in (cycle_at, quarantine_at) if t is not None and t <= now]
            if not due:
                return
            if quarantine_at is not None and quarantine_at == min(due):
                job.quarantine_at = None
                job.active_at = None
                job.status_code = job.rules.quarantine_code
                job.quarantine = example_quarantine(job.rules.quarantine_reason)
                return
            assert cycle_at is not None
            self._end_cycle(job, cycle_at)

    def _end_cycle(self, job: Job, at: float) -> None:
        began = iso(self._wall(job.cycle_began if job.cycle_began is not None else at))
        ended = iso(self._wall(at))
        job.cycle_began = at
        job.active_at = at + job.rules.cycle_s
        if job.bad_credentials:
            job.active_at = None
            job.status_code = "Quarantine"
            job.failures += 1
            job.last_execution = execution("Failed", began, ended, dict(QUARANTINE_ERROR))
            job.quarantine = {
                "currentBegan": ended,
                "nextAttempt": iso(self._wall(at) + dt.timedelta(hours=1)),
                "reason": "EncounteredQuarantineException",
                "seriesBegan": ended,
                "seriesCount": job.failures,
                "error": dict(QUARANTINE_ERROR),
            }
        elif job.rules.fail_cycles:
            job.status_code = "Active"
            job.failures += 1
            job.last_execution = execution("Failed", began, ended, dict(CYCLE_ERROR))
        else:
            job.status_code = "Active"
            job.failures = 0
            entitled = self.entitled(job.sp_id)
            job.last_execution = execution("Succeeded", began, ended, dict(NO_ERROR), entitled)
            job.last_success = job.last_execution
            self.logs.cycle_ended(job, began, ended)

    def entitled(self, sp_id: str) -> int:
        """How many objects a cycle finds in scope (``countEntitled``): the whole directory
        (:data:`DIRECTORY_USERS`) when the app's ``SyncAll`` secret is ``true``, else one per
        user or group assigned to it (a group counts once: the sandbox has no members)."""
        if self.secrets.get(sp_id, {}).get("SyncAll", "").lower() == "true":
            return DIRECTORY_USERS
        return len(self.gallery.assignments.of(sp_id))

    def _secrets_bad(self, sp_id: str) -> bool:
        values = self.secrets.get(sp_id, {}).values()
        return any(QUARANTINE_MARKER in v or REJECT_MARKER in v for v in values)
