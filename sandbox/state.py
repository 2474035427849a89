"""Tenant state: principals, templates, jobs, secrets and call counters. Pure (no aiohttp)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sandbox.cycles import JobCycles
from sandbox.gallery import GalleryState
from sandbox.models import (
    CycleRules,
    Job,
    Principal,
    bad_request,
    not_found,
)
from sandbox.provisioning_logs import ProvisioningLogs
from sandbox.seed import Seed, SeedPrincipal
from sandbox.vocabulary import (
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
    #: Calls received per route, counted on arrival (before latency): a test can act while
    #: a call is in flight (arrived but not yet in ``calls``).
    arrived: Counter[str] = field(default_factory=Counter)

    def record_call(self, route: str, status: int | str) -> None:
        self.calls[route][str(status)] += 1


class TenantState(JobCycles):
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
        self.logs = ProvisioningLogs(self)  # sandbox/provisioning_logs.py

    def add_principal(self, p: SeedPrincipal) -> Principal:
        principal = Principal(
            id=p.id.lower(),
            display_name=p.displayName or p.id,
            app_id=p.appId or str(uuid.uuid5(uuid.UUID(p.id), "appId")),
            templates=list(p.templates),
            new_until=self._clock() + p.newForMs / 1000,
            owners=frozenset(o.lower() for o in p.owners),
            quarantine_after_s=p.quarantineAfterS,
            fail_cycles=p.failCycles,
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

    def list_jobs(self, sp_id: str, *, lag_s: float = 0) -> list[dict[str, Any]]:
        """The principal's jobs; one made less than ``lag_s`` ago is not listed yet (the
        eventual consistency of Graph's job list)."""
        jobs = list(self.jobs[self.principal(sp_id).id].values())
        for job in jobs:
            self._advance(job)
        seen_before = self._clock() - lag_s
        return [j.to_json() for j in jobs if lag_s <= 0 or j.created_at <= seen_before]

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

    def start_job(self, sp_id: str, job_id: str, *, rules: CycleRules) -> Job:
        job = self._run(sp_id, job_id, rules)
        job.starts += 1
        self.stats.starts[job.id] += 1
        return job

    def restart_job(
        self, sp_id: str, job_id: str, reset_scope: str | None, *, rules: CycleRules
    ) -> Job:
        scopes = {s.strip() for s in (reset_scope or "").split(",") if s.strip()}
        unknown = scopes - RESET_SCOPES
        if unknown:
            raise bad_request(f"Invalid resetScope value(s): {', '.join(sorted(unknown))}.")
        return self._run(sp_id, job_id, rules)

    def rules_for(self, sp_id: str, defaults: CycleRules) -> CycleRules:
        """The principal's own job behaviour over the fault profile's."""
        p = self.principal(sp_id)
        return dataclasses.replace(
            defaults,
            quarantine_after_s=(
                p.quarantine_after_s
                if p.quarantine_after_s is not None
                else defaults.quarantine_after_s
            ),
            fail_cycles=p.fail_cycles if p.fail_cycles is not None else defaults.fail_cycles,
        )

    def pause_job(self, sp_id: str, job_id: str) -> Job:
        job = self.job(sp_id, job_id)
        job.schedule_state = "Paused"
        job.status_code = "Paused"
        job.active_at = None
        job.quarantine_at = None
        return job

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
                    "quarantined": j.quarantine is not None,
                    "lastExecutionState": (j.last_execution or {}).get("state"),
                    "countSuccessiveCompleteFailures": j.failures,
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
            "arrived": dict(s.arrived),
            "total_calls": sum(sum(c.values()) for c in s.calls.values()),
            "gallery": self.gallery.stats_json(),
        }

    def may_touch(self, sp_id: str, app_id: str) -> bool:
        """True when ``app_id`` owns the principal (Application.ReadWrite.OwnedBy's rule)."""
        return app_id.lower() in self.principal(sp_id).owners

    def principals_json(self) -> list[dict[str, Any]]:
        return [
            {
                "id": p.id,
                "displayName": p.display_name,
                "appId": p.app_id,
                "templates": [t.model_dump() for t in p.templates],
                "newForMsRemaining": max(0.0, (p.new_until - self._clock()) * 1000),
                "owners": sorted(p.owners),
            }
            for p in self.principals.values()
        ]
