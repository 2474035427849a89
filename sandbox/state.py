"""Tenant state: principals, templates, jobs, secrets and call counters. Pure (no aiohttp)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sandbox.gallery import GalleryState
from sandbox.models import (
    NO_ERROR,
    QUARANTINE_ERROR,
    ZERO_TIME,
    Job,
    Principal,
    bad_request,
    execution,
    iso,
    not_found,
)
from sandbox.seed import Seed, SeedPrincipal
from sandbox.vocabulary import (
    QUARANTINE_MARKER,
    REJECT_MARKER,
    RESET_SCOPES,
    SENSITIVE_KEYS,
    check_keys,
)


@dataclass
class Stats:
    calls: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    starts: Counter[str] = field(default_factory=Counter)
    secrets: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)

    def record_call(self, route: str, status: int | str) -> None:
        self.calls[route][str(status)] += 1


class TenantState:
    """One tenant. ``clock`` is monotonic seconds, ``now`` the wall-clock datetime."""

    def __init__(
        self,
        seed: Seed,
        *,
        clock: Callable[[], float],
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.seed = seed
        self.tenant_id = seed.tenantId
        self._clock = clock
        self._now = now
        self.reset()

    def reset(self) -> None:
        self.principals: dict[str, Principal] = {}
        self.jobs: dict[str, dict[str, Job]] = {}
        self.secrets: dict[str, dict[str, str]] = {}
        self.stats = Stats()
        for p in self.seed.all_principals():
            self.add_principal(p)
        self.gallery = GalleryState(self, self._clock, self._now)  # sandbox/gallery.py

    def add_principal(self, p: SeedPrincipal) -> Principal:
        principal = Principal(
            id=p.id.lower(),
            display_name=p.displayName or p.id,
            app_id=p.appId or str(uuid.uuid5(uuid.UUID(p.id), "appId")),
            templates=list(p.templates),
            new_until=self._clock() + p.newForMs / 1000,
        )
        self.principals[principal.id] = principal
        self.jobs.setdefault(principal.id, {})
        return principal

    # -- lookups ---------------------------------------------------------------------------
    def principal(self, sp_id: str) -> Principal:
        found = self.principals.get(sp_id.lower())
        if found is None:
            raise not_found(sp_id)
        return found

    def is_new(self, sp_id: str) -> bool:
        found = self.principals.get(sp_id.lower())
        return found is not None and self._clock() < found.new_until

    def job(self, sp_id: str, job_id: str) -> Job:
        job = self.jobs[self.principal(sp_id).id].get(job_id)
        if job is None:
            raise not_found(job_id)
        self._advance(job)
        return job

    def find_job(self, sp_id: str, job_id: str) -> Job | None:
        return self.jobs.get(sp_id.lower(), {}).get(job_id)

    def templates(self, sp_id: str) -> list[dict[str, Any]]:
        p = self.principal(sp_id)
        return [p.template_json(t) for t in p.templates]

    def list_jobs(self, sp_id: str) -> list[dict[str, Any]]:
        jobs = list(self.jobs[self.principal(sp_id).id].values())
        for job in jobs:
            self._advance(job)
        return [j.to_json() for j in jobs]

    # -- job lifecycle ---------------------------------------------------------------------
    def create_job(self, sp_id: str, template_id: str, *, initial_status: str) -> Job:
        p = self.principal(sp_id)
        if template_id not in {t.id for t in p.templates}:
            raise bad_request(
                f"The templateId '{template_id}' does not match any synchronization template "
                "of this service principal."
            )
        job_id = f"{template_id}.{uuid.UUID(self.tenant_id).hex}.{uuid.uuid4()}"
        job = Job(
            id=job_id,
            template_id=template_id,
            sp_id=p.id,
            created_at=self._clock(),
            schedule_state="Disabled",
            status_code=initial_status,
        )
        self.jobs[p.id][job_id] = job
        return job

    def delete_job(self, sp_id: str, job_id: str) -> None:
        job = self.job(sp_id, job_id)
        del self.jobs[job.sp_id][job.id]

    def start_job(self, sp_id: str, job_id: str, *, activation_delay_s: float) -> Job:
        job = self._run(sp_id, job_id, activation_delay_s)
        job.starts += 1
        self.stats.starts[job.id] += 1
        return job

    def restart_job(
        self, sp_id: str, job_id: str, reset_scope: str | None, *, activation_delay_s: float
    ) -> Job:
        scopes = {s.strip() for s in (reset_scope or "").split(",") if s.strip()}
        unknown = scopes - RESET_SCOPES
        if unknown:
            raise bad_request(f"Invalid resetScope value(s): {', '.join(sorted(unknown))}.")
        return self._run(sp_id, job_id, activation_delay_s)

    def pause_job(self, sp_id: str, job_id: str) -> Job:
        job = self.job(sp_id, job_id)
        job.schedule_state = "Paused"
        job.status_code = "Paused"
        job.active_at = None
        return job

    def _run(self, sp_id: str, job_id: str, activation_delay_s: float) -> Job:
        job = self.job(sp_id, job_id)
        job.schedule_state = "Active"
        job.status_code = "NotRun"
        job.quarantine = None
        job.began = self._now()
        job.active_at = self._clock() + activation_delay_s
        job.bad_credentials = self._secrets_bad(job.sp_id)
        if job.last_execution is None:
            job.last_execution = execution("Failed", ZERO_TIME, ZERO_TIME, dict(NO_ERROR))
        self._advance(job)
        return job

    def _advance(self, job: Job) -> None:
        if job.active_at is None or self._clock() < job.active_at:
            return
        job.active_at = None
        began = iso(job.began or self._now())
        ended = iso(self._now())
        if job.bad_credentials:
            job.status_code = "Quarantine"
            job.failures += 1
            job.last_execution = execution("Failed", began, ended, dict(QUARANTINE_ERROR))
            job.quarantine = {
                "currentBegan": ended,
                "nextAttempt": iso(self._now() + dt.timedelta(hours=1)),
                "reason": "EncounteredQuarantineException",
                "seriesBegan": ended,
                "seriesCount": job.failures,
                "error": dict(QUARANTINE_ERROR),
            }
        else:
            job.status_code = "Active"
            job.failures = 0
            job.last_execution = execution("Succeeded", began, ended, dict(NO_ERROR))
            job.last_success = job.last_execution

    # -- secrets and credentials ------------------------------------------------------------
    def save_secrets(self, sp_id: str, pairs: list[tuple[str, str]]) -> None:
        p = self.principal(sp_id)
        check_keys(k for k, _ in pairs)
        saved = self.secrets.setdefault(p.id, {})
        for key, value in pairs:
            if value == "":
                saved.pop(key, None)
            else:
                saved[key] = value
        self.stats.secrets[p.id] += 1

    def get_secrets(self, sp_id: str) -> list[dict[str, str]]:
        saved = self.secrets.get(self.principal(sp_id).id, {})
        return [{"key": k, "value": "*" if k in SENSITIVE_KEYS else v} for k, v in saved.items()]

    def validate_credentials(
        self, sp_id: str, pairs: list[tuple[str, str]], *, use_saved: bool
    ) -> None:
        p = self.principal(sp_id)
        if use_saved:
            saved = self.secrets.get(p.id)
            if not saved:
                raise bad_request("No saved credentials were found for this application.")
            pairs = list(saved.items())
        check_keys(k for k, _ in pairs)
        if any(REJECT_MARKER in v for _, v in pairs):
            raise bad_request(
                "Credential validation failed: the target system rejected the supplied "
                "credentials (sandbox:reject)."
            )

    def require_template(self, sp_id: str, template_id: str | None) -> None:
        if not template_id or template_id not in {t.id for t in self.principal(sp_id).templates}:
            raise bad_request(f"The templateId '{template_id}' is not valid for this application.")

    def _secrets_bad(self, sp_id: str) -> bool:
        values = self.secrets.get(sp_id, {}).values()
        return any(QUARANTINE_MARKER in v or REJECT_MARKER in v for v in values)

    # -- stats -----------------------------------------------------------------------------
    def stats_json(self) -> dict[str, Any]:
        jobs: dict[str, list[dict[str, Any]]] = {}
        for sp_id, sp_jobs in self.jobs.items():
            for job in sp_jobs.values():
                self._advance(job)
            jobs[sp_id] = [
                {
                    "id": j.id,
                    "templateId": j.template_id,
                    "starts": j.starts,
                    "scheduleState": j.schedule_state,
                    "statusCode": j.status_code,
                }
                for j in sp_jobs.values()
            ]
        s = self.stats
        return {
            "calls": {route: dict(c) for route, c in s.calls.items()},
            "jobs": jobs,
            "starts": dict(s.starts),
            "secrets": dict(s.secrets),
            "faults": dict(s.faults),
            "total_calls": sum(sum(c.values()) for c in s.calls.values()),
            "gallery": self.gallery.stats_json(),
        }

    def principals_json(self) -> list[dict[str, Any]]:
        return [
            {
                "id": p.id,
                "displayName": p.display_name,
                "appId": p.app_id,
                "templates": [t.model_dump() for t in p.templates],
                "newForMsRemaining": max(0.0, (p.new_until - self._clock()) * 1000),
            }
            for p in self.principals.values()
        ]
