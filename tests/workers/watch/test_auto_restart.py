"""The opt-in auto-restart: the rule, pure (transient reasons, credentials, the cap, the
backoff), then with the real stack (sandbox over HTTPS, Redis, arq workers): a job the sandbox
quarantines for a transient reason is restarted through a recorded ``restart`` request, at
most the cap a day, never twice in flight; off by default nothing happens, and a credentials
quarantine is never restarted."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from redis.asyncio import Redis

from service.core.application_store import ApplicationStore
from service.core.applications import ErrorView, QuarantineView
from service.core.health import Health
from service.core.models import Record, State
from service.core.settings import Settings
from tests.api.test_routes import api_client
from tests.helpers.harness import SALESFORCE, Harness, worker_settings
from tests.helpers.tenant_admin import TenantAdmin
from tests.helpers.ui import OPS_KEY, login, operator_settings
from tests.workers.test_watch import deps_for
from workers.watch import Watch
from workers.watch.auto_restart import (
    BACKOFF_S,
    CALLER,
    TRANSIENT_REASONS,
    AutoRestarter,
    decide,
)
from workers.workflow.steps import Deps

ESCROWS = "EncounteredEscrowProportionThreshold"
NOW = 1_000_000.0


def _q(reason: str, code: str = "SandboxEscrowThreshold") -> QuarantineView:
    return QuarantineView(reason=reason, error=ErrorView(code=code, tenant_actionable=False))


@pytest.mark.parametrize("reason", sorted(TRANSIENT_REASONS))
def test_a_transient_reason_is_restarted_with_its_reset_scope(reason: str) -> None:
    decision = decide(_q(reason), [], NOW, 3)
    assert decision.restart
    assert "QuarantineState" in decision.reset_scope


@pytest.mark.parametrize(
    "reason",
    ["EncounteredQuarantineException", "TooManyDeletes", "QuarantinedOnDemand", "Unknown", "", "X"],
)
def test_any_other_reason_is_left_to_a_person(reason: str) -> None:
    assert not decide(_q(reason), [], NOW, 3).restart


def test_a_credentials_error_is_never_restarted_whatever_the_reason() -> None:
    decision = decide(_q(ESCROWS, "SalesforceInvalidCredentials"), [], NOW, 3)
    assert not decision.restart
    assert "rotateCredentials" in decision.why
    assert not decide(None, [], NOW, 3).restart


def test_the_cap_counts_the_last_24_hours_and_the_backoff_spaces_them() -> None:
    assert not decide(_q(ESCROWS), [NOW - 10_000, NOW - 9_000, NOW - 1_000], NOW, 3).restart
    assert decide(_q(ESCROWS), [NOW - 90_000, NOW - 80_000, NOW - 70_000], NOW, 3).restart
    # the second waits BACKOFF_S[1] after the first, the third BACKOFF_S[2] after the second
    assert not decide(_q(ESCROWS), [NOW - BACKOFF_S[1] + 5], NOW, 3).restart
    assert decide(_q(ESCROWS), [NOW - BACKOFF_S[1]], NOW, 3).restart
    two = [NOW - 50_000, NOW - BACKOFF_S[2] + 5]
    assert not decide(_q(ESCROWS), two, NOW, 3).restart
    assert list(BACKOFF_S) == sorted(BACKOFF_S)


# -- the real stack ----------------------------------------------------------------------------
def _settings(harness: Harness, redis_url: str, **extra: object) -> Settings:
    return worker_settings(harness.sandbox, redis_url, queue_name=harness.settings.queue_name,
                           watch_schedule="10,20,40", **extra)  # fmt: skip


async def _quarantined_job(harness: Harness, reason: str) -> str:
    """A job that succeeded, then (the sandbox's fault, an admin's restart) went to quarantine."""
    rec = await harness.submit(SALESFORCE, caller="alpha")
    await harness.drain()
    done = await harness.get(rec.id)
    assert done.state is State.SUCCEEDED, done.error
    assert done.job_id
    harness.sandbox.patch_faults({"quarantine_after_s": 0.2, "quarantine_reason": reason,
                                  "quarantine_status_code": "Quarantine"})  # fmt: skip
    path = f"/servicePrincipals/{SALESFORCE}/synchronization/jobs/{done.job_id}/restart"
    assert await TenantAdmin(harness.sandbox).call("POST", path, {}) == 204
    return done.job_id


async def _check_until_quarantined(watch: Watch, harness: Harness, job_id: str) -> None:
    apps = ApplicationStore.of(harness.store)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        await watch.check(SALESFORCE, job_id)
        app = await apps.get(SALESFORCE)
        assert app is not None
        if app.jobs[0].health is Health.QUARANTINED:
            return
    raise AssertionError("not quarantined within 20 s")


async def _auto_restarts(harness: Harness, job_id: str) -> list[Record]:
    """The job's auto-restart requests, oldest first (their ids are the cap's Redis entries)."""
    key = harness.store.keys.auto_restarts(SALESFORCE, job_id)
    ids = await harness.store.redis.zrange(key, 0, -1)
    records = [await harness.store.get(i.decode()) for i in ids]
    assert all(r is not None and r.caller == CALLER for r in records)
    return [r for r in records if r is not None]


def _count(deps: Deps, result: str) -> float:
    sample = deps.metrics.registry.get_sample_value(
        "provisioner_watch_auto_restarts_total", {"result": result}
    )
    return sample or 0.0


def _sandbox_restarts(harness: Harness, job_id: str) -> list[str]:
    restarts = harness.sandbox._call("GET", "/_sandbox/lifecycle")["restarts"]
    return [r["resetScope"] for r in restarts if r["jobId"] == job_id]


async def test_a_transient_quarantine_is_restarted_by_a_recorded_request(
    harness: Harness, redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    settings = _settings(harness, redis_url, auto_restart="quarantine")
    harness.settings = settings
    job_id = await _quarantined_job(harness, ESCROWS)
    admin_restarts = len(_sandbox_restarts(harness, job_id))
    async with deps_for(settings, harness, redis) as deps:
        watch = Watch(deps)
        await _check_until_quarantined(watch, harness, job_id)
        [filed] = await _auto_restarts(harness, job_id)
        assert (filed.action, filed.reset_scope) == ("restart", ["QuarantineState", "Escrows"])
        assert filed.metadata == {"trigger": "auto-restart", "quarantineReason": ESCROWS}
        # checked again before it ran: the in-flight rule keeps it one
        await watch.check(SALESFORCE, job_id)
        assert len(await _auto_restarts(harness, job_id)) == 1
        key = harness.store.keys.auto_restarts(SALESFORCE, job_id)
        assert await redis.zcard(key) == 1
        assert (_count(deps, "requested"), _count(deps, "in_flight")) == (1, 1)
        # the target recovered: the restart lifts the quarantine and is verified
        harness.sandbox.patch_faults({"quarantine_after_s": None})
        await harness.drain()
        done = await harness.get(filed.id)
        assert done.state is State.SUCCEEDED, done.error
        assert any(h.graph_request_id for h in done.history if h.step.value == "restart_job")
        scopes = _sandbox_restarts(harness, job_id)[admin_restarts:]
        assert [{f.strip() for f in s.split(",")} for s in scopes] == [
            {"QuarantineState", "Escrows"}
        ]
        await _seen_by_an_operator(harness, redis_url, tmp_path, filed.id)
        app = await ApplicationStore.of(harness.store).get(SALESFORCE)
        assert app is not None
        assert filed.id in app.request_ids
        assert app.last_request is not None
        assert app.last_request.caller == "alpha"  # health events still go to the caller
        await watch.check(SALESFORCE, job_id)
        app = await ApplicationStore.of(harness.store).get(SALESFORCE)
        assert app is not None
        assert app.jobs[0].health is Health.HEALTHY


async def _seen_by_an_operator(harness: Harness, redis_url: str, tmp_path: Path, rid: str) -> None:
    """The request in the real API's list, its own view with history, and /ui, for ``ops``."""
    settings = operator_settings(redis_url, tmp_path).model_copy(
        update={"queue_name": harness.settings.queue_name}
    )
    auth = {"Authorization": f"Bearer {OPS_KEY}"}
    async with api_client(settings) as client:
        listed = await (await client.get("/v1/provisioning-requests", headers=auth)).json()
        mine = [r for r in listed["items"] if r["id"] == rid]
        assert [(r["caller"], r["action"]) for r in mine] == [(CALLER, "restart")]
        one = await (await client.get(f"/v1/provisioning-requests/{rid}", headers=auth)).json()
        assert [h["step"] for h in one["history"]][:2] == ["find_job", "restart_job"]
        assert all(h.get("graphRequestId") for h in one["history"][:2])
        await login(client, OPS_KEY)
        page = await (await client.get(f"/ui/requests/{rid}")).text()
        assert CALLER in page
        assert "restart" in page


async def test_the_daily_cap_holds(harness: Harness, redis: Redis, redis_url: str) -> None:
    settings = _settings(harness, redis_url, auto_restart="quarantine",
                         auto_restart_max_per_day=2)  # fmt: skip
    harness.settings = settings
    job_id = await _quarantined_job(harness, "IngestionInterrupted")
    async with deps_for(settings, harness, redis) as deps:
        # no backoff between tries, so that the cap is what stops them
        watch = Watch(
            deps, restarter=AutoRestarter(deps.store, 2, backoff=(0,), metrics=deps.metrics)
        )
        for n in (1, 2):
            await _check_until_quarantined(watch, harness, job_id)
            assert len(await _auto_restarts(harness, job_id)) == n
            await watch.check(SALESFORCE, job_id)  # before it ran: the in-flight rule
            assert len(await _auto_restarts(harness, job_id)) == n
            assert _count(deps, "in_flight") == n
            await harness.drain()  # the restart runs; the fault quarantines the job again
        await _check_until_quarantined(watch, harness, job_id)
        await watch.check(SALESFORCE, job_id)
        assert len(await _auto_restarts(harness, job_id)) == 2
        assert _count(deps, "requested") == 2
        assert _count(deps, "capped") >= 1
    assert all(r.reset_scope == ["QuarantineState"] for r in await _auto_restarts(harness, job_id))


async def test_off_by_default_nothing_is_restarted(
    harness: Harness, redis: Redis, redis_url: str
) -> None:
    settings = _settings(harness, redis_url)
    assert settings.auto_restart == "off"
    harness.settings = settings
    job_id = await _quarantined_job(harness, ESCROWS)
    before = len(_sandbox_restarts(harness, job_id))
    async with deps_for(settings, harness, redis) as deps:
        watch = Watch(deps)
        assert watch.restarter is None
        await _check_until_quarantined(watch, harness, job_id)
        await watch.check(SALESFORCE, job_id)
    assert await _auto_restarts(harness, job_id) == []
    await harness.drain()  # nothing was queued: Graph sees no restart
    assert len(_sandbox_restarts(harness, job_id)) == before


async def test_a_credentials_quarantine_is_not_restarted(
    harness: Harness, redis: Redis, redis_url: str
) -> None:
    settings = _settings(harness, redis_url, auto_restart="quarantine")
    harness.settings = settings
    rec = await harness.submit(SALESFORCE, caller="alpha")
    await harness.drain()
    done = await harness.get(rec.id)
    assert done.job_id
    await TenantAdmin(harness.sandbox).break_credentials(SALESFORCE, done.job_id)
    async with deps_for(settings, harness, redis) as deps:
        watch = Watch(deps)
        await _check_until_quarantined(watch, harness, done.job_id)
        app = await ApplicationStore.of(harness.store).get(SALESFORCE)
        assert app is not None
        assert app.jobs[0].quarantine is not None
        assert app.jobs[0].quarantine.reason == "EncounteredQuarantineException"
        await watch.check(SALESFORCE, done.job_id)
        assert _count(deps, "not_transient") >= 1
        assert _count(deps, "requested") == 0
    assert await _auto_restarts(harness, done.job_id) == []
    await harness.drain()  # nothing was queued: Graph sees no restart from the watch
    key = harness.store.keys.auto_restarts(SALESFORCE, done.job_id)
    assert await redis.zcard(key) == 0


async def test_nothing_is_filed_while_a_persons_request_for_the_job_is_in_flight(
    harness: Harness, redis: Redis, redis_url: str
) -> None:
    settings = _settings(harness, redis_url, auto_restart="quarantine")
    harness.settings = settings
    job_id = await _quarantined_job(harness, ESCROWS)
    # a person's restart naming no template (its slot is the principal's "*"), not run yet
    theirs = Record(id=uuid.uuid4().hex, service_principal_id=SALESFORCE, action="restart",
                    caller="alpha")  # fmt: skip
    _, created = await harness.store.accept(theirs)
    assert created
    async with deps_for(settings, harness, redis) as deps:
        watch = Watch(deps)
        await _check_until_quarantined(watch, harness, job_id)
        assert await _auto_restarts(harness, job_id) == []
        assert _count(deps, "in_flight") >= 1
        await harness.drain()  # theirs runs (and the fault quarantines the job again)
        assert (await harness.get(theirs.id)).state.terminal
        await _check_until_quarantined(watch, harness, job_id)
        assert len(await _auto_restarts(harness, job_id)) == 1  # now the watch may
