"""The last cycle's per-user outcomes against the real sandbox over HTTPS: a check after a
cycle reads the job's provisioning logs page by page, counts them, reads them once per cycle,
stops at its page budget (``truncated``), shares the tick's call budget, and records
``unavailable`` without ``AuditLog.Read.All`` while the watch itself carries on."""

from __future__ import annotations

import time
import uuid
from typing import Any

from redis.asyncio import Redis

from service.core.application_store import ApplicationStore, Update, member
from service.core.applications import Application
from service.core.cycles import LastCycle
from service.core.health import Health
from service.core.models import State
from tests.api.test_routes import AUTH, api_client, make_settings
from tests.helpers.harness import SCIM, Harness, worker_settings
from tests.helpers.tenant_admin import TenantAdmin
from tests.workers.test_watch import deps_for
from workers.watch import Watch
from workers.watch.last_cycle import MAX_PAGES, NO_PERMISSION

DIRECTORY = 25  # the sandbox directory's users (a SyncAll job's scope)


def _user(harness: Harness, n: int) -> str:
    return str(uuid.uuid5(uuid.UUID(harness.sandbox.tenant_id), f"user-{n}"))


def _log_calls(harness: Harness) -> int:
    return sum(harness.sandbox.stats()["calls"].get("auditLogs.provisioning", {}).values())


async def _view(harness: Harness, redis_url: str) -> dict[str, Any]:
    """The job's view as the real API serves it to the request's caller."""
    settings = make_settings(redis_url, queue_name=harness.settings.queue_name)
    async with api_client(settings) as client:
        resp = await client.get(f"/v1/applications/{SCIM}", headers=AUTH)
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
    [job] = body["jobs"]
    return job


async def _sync_all_job(harness: Harness) -> str:
    """A SCIM job scoped to the whole directory, started by a real request."""
    secrets = {"value": [{"key": "SyncAll", "value": "true"}]}
    path = f"/servicePrincipals/{SCIM}/synchronization/secrets"
    assert await TenantAdmin(harness.sandbox).call("PUT", path, secrets) == 204
    rec = await harness.submit(SCIM, template="scim", caller="alpha")
    await harness.drain()
    done = await harness.get(rec.id)
    assert done.state is State.SUCCEEDED, done.error
    assert done.job_id
    return done.job_id


async def _checked_until_cycle(watch: Watch, harness: Harness, job_id: str) -> LastCycle:
    """Check until the view has a lastCycle (the first cycle ends 0.1 s after the start)."""
    apps = ApplicationStore.of(harness.store)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        await watch.check(SCIM, job_id)
        app = await apps.get(SCIM)
        assert app is not None
        if app.jobs[0].last_cycle is not None:
            return app.jobs[0].last_cycle
    raise AssertionError("no lastCycle within 20 s")


def _outcomes(harness: Harness, body: dict[str, Any]) -> None:
    harness.sandbox._call("PUT", "/_sandbox/provisioning-logs", body)


async def test_a_finished_cycle_is_counted_from_its_logs_once(
    harness: Harness, redis: Redis, redis_url: str
) -> None:
    failures = {_user(harness, 0): "duplicate userName", _user(harness, 1): "duplicate userName"}
    failures[_user(harness, 2)] = "the target rejected the email"
    _outcomes(harness, {"failures": failures, "skipped": [_user(harness, 3)]})
    harness.sandbox.patch_faults({"page_size": 10})  # 25 entries: 3 pages
    job_id = await _sync_all_job(harness)
    async with deps_for(harness.settings, harness, redis) as deps:
        watch = Watch(deps)
        cycle = await _checked_until_cycle(watch, harness, job_id)
        assert (cycle.succeeded, cycle.failed, cycle.skipped, cycle.warnings) == (21, 3, 1, 0)
        assert cycle.unavailable is None
        assert not cycle.truncated
        assert [(f.reason, f.count) for f in cycle.top_failures] == [
            ("SandboxEntryExportFailed", 3)
        ]
        assert cycle.top_failures[0].message == "duplicate userName"
        app = await ApplicationStore.of(harness.store).get(SCIM)
        assert app is not None
        execution = app.jobs[0].last_execution
        assert execution is not None
        assert (cycle.began, cycle.ended) == (execution.began, execution.ended)
        assert app.jobs[0].health is Health.HEALTHY
        assert _log_calls(harness) == 3
        await watch.check(SCIM, job_id)  # no new cycle: no new read
        assert _log_calls(harness) == 3
    view = (await _view(harness, redis_url))["lastCycle"]
    assert {k: view[k] for k in ("succeeded", "failed", "skipped", "truncated", "unavailable")} == {
        "succeeded": 21,
        "failed": 3,
        "skipped": 1,
        "truncated": False,
        "unavailable": None,
    }
    assert view["topFailures"] == [
        {"reason": "SandboxEntryExportFailed", "count": 3, "message": "duplicate userName"}
    ]
    assert view["began"] is not None
    assert view["ended"] is not None


async def test_a_cycle_longer_than_the_page_budget_is_marked_truncated(
    harness: Harness, redis: Redis
) -> None:
    harness.sandbox.patch_faults({"page_size": 2})  # 13 pages, MAX_PAGES read
    job_id = await _sync_all_job(harness)
    async with deps_for(harness.settings, harness, redis) as deps:
        cycle = await _checked_until_cycle(Watch(deps), harness, job_id)
    assert cycle.truncated
    assert cycle.succeeded == 2 * MAX_PAGES
    assert _log_calls(harness) == MAX_PAGES


async def test_without_the_audit_log_permission_the_cycle_says_so(
    harness: Harness, redis: Redis, redis_url: str
) -> None:
    job_id = await _sync_all_job(harness)
    harness.sandbox.patch_faults({"token_roles": ["Synchronization.ReadWrite.All"]})
    async with deps_for(harness.settings, harness, redis) as deps:
        cycle = await _checked_until_cycle(Watch(deps), harness, job_id)
    assert cycle.unavailable is not None
    assert cycle.unavailable.startswith(NO_PERMISSION)
    assert "Authorization_RequestDenied" in cycle.unavailable
    assert (cycle.succeeded, cycle.failed, cycle.skipped) == (None, None, None)
    app = await ApplicationStore.of(harness.store).get(SCIM)
    assert app is not None
    assert app.jobs[0].health is Health.HEALTHY  # the watch itself carried on
    assert app.jobs[0].last_error is None
    view = await _view(harness, redis_url)
    assert view["health"] == "healthy"
    assert view["lastCycle"]["unavailable"].startswith(NO_PERMISSION)
    assert view["lastCycle"]["succeeded"] is None


async def test_log_pages_take_the_slots_a_tick_has_left(
    harness: Harness, redis: Redis, redis_url: str
) -> None:
    harness.sandbox.patch_faults({"page_size": 5})
    job_id = await _sync_all_job(harness)
    settings = worker_settings(harness.sandbox, redis_url, queue_name=harness.settings.queue_name,
                               watch_interval_s=1, watch_max_calls_per_s=3)  # fmt: skip
    apps = ApplicationStore.of(harness.store)
    async with deps_for(settings, harness, redis) as deps:
        watch = Watch(deps)
        deadline = time.monotonic() + 20
        while True:  # the first cycle has ended once a check reads a lastExecution
            await watch.check(SCIM, job_id, pages=None)
            app = await apps.get(SCIM)
            assert app is not None
            if app.jobs[0].last_cycle is not None or time.monotonic() > deadline:
                break
        # forget it and let a tick read it again: 3 slots, 1 for the job, 2 for log pages
        await apps.update(SCIM, _forget_cycle)
        await redis.zadd(f"{settings.queue_name}:watch", {member(SCIM, job_id): 1})
        before_logs = _log_calls(harness)
        before_jobs = sum(harness.sandbox.stats()["calls"].get("jobs.get", {}).values())
        began = time.monotonic()
        tick = await watch.tick()
        took = time.monotonic() - began
    assert tick.checked == 1
    jobs = sum(harness.sandbox.stats()["calls"].get("jobs.get", {}).values()) - before_jobs
    assert (jobs, _log_calls(harness) - before_logs) == (1, 2)
    assert took >= 0.6  # the pages came at 1/3 s and 2/3 s, not at once
    app = await apps.get(SCIM)
    assert app is not None
    cycle = app.jobs[0].last_cycle
    assert cycle is not None
    assert cycle.truncated
    assert cycle.succeeded == 10


def _forget_cycle(app: Application) -> Update:
    app.jobs[0].last_cycle = None
    return Update()
