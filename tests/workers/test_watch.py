"""The health watch against the real sandbox: a succeeded request's job is watched, each check
reads Graph through the call runner, changes of health are recorded and queued for telling,
a deleted job is confirmed gone, and a tick never calls Graph past the budget."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from service.core.application_store import ApplicationStore, member
from service.core.applications import GONE, NOT_CHECKED, Application, Reading
from service.core.health import Health
from service.core.models import Record, State
from service.core.settings import Settings
from tests.helpers.harness import SALESFORCE, SCIM, Harness, worker_settings
from tests.helpers.tenant_admin import TenantAdmin
from workers.graph.client import GraphClient
from workers.graph.tls import close_quietly, new_session
from workers.graph.token import TokenProvider
from workers.metrics import WorkerMetrics
from workers.watch import Watch
from workers.watch.rules import Schedule, observed, registered
from workers.workflow.steps import Deps
from workers.workflow.throttle import Throttle


@asynccontextmanager
async def deps_for(settings: Settings, harness: Harness, redis: Redis) -> AsyncIterator[Deps]:
    """A worker's dependencies, as its start-up builds them."""
    session = new_session(settings)
    tokens = await TokenProvider.create(settings)
    try:
        yield Deps(
            settings=settings,
            store=harness.store,
            graph=GraphClient(session, settings.graph_url, tokens),
            throttle=Throttle(redis, settings.queue_name, settings.tenant_id or "t"),
            metrics=WorkerMetrics(),
        )
    finally:
        await close_quietly(session)


def _count(metrics: WorkerMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def _succeeded(harness: Harness, sp: str, **extra: Any) -> tuple[str, str]:
    done = await harness.run(sp, **extra)
    assert done.state is State.SUCCEEDED, done.error
    assert done.job_id
    return done.id, done.job_id


async def test_a_succeeded_request_puts_its_job_under_watch(harness: Harness, redis: Redis) -> None:
    ended = time.time()
    request_id, job_id = await _succeeded(harness, SALESFORCE, caller="tests")
    apps = ApplicationStore.of(harness.store)
    app = await apps.get(SALESFORCE)
    assert app is not None
    assert app.request_ids == [request_id]
    assert app.callers == ["tests"]
    [job] = app.jobs
    assert (job.job_id, job.template_id, job.health, job.reason) == (
        job_id,
        "salesforce",
        Health.UNKNOWN,
        NOT_CHECKED,
    )
    due = await redis.zscore(f"{harness.settings.queue_name}:watch", member(SALESFORCE, job_id))
    assert due is not None
    assert due / 1000 - ended <= 60
    # a second request adopting the same job keeps one job and remembers both requests
    again, same_job = await _succeeded(harness, SALESFORCE, caller="tests")
    app = await apps.get(SALESFORCE)
    assert app is not None
    assert same_job == job_id
    assert len(app.jobs) == 1
    assert app.request_ids == [again, request_id]


async def test_a_second_job_for_a_principal_joins_its_application(harness: Harness) -> None:
    """A request that created its job saves the watch without reading the application first
    (it guesses there is none): for a principal that has one, the final save finds it and the
    job is added to it, not written over it."""
    first, first_job = await _succeeded(harness, SCIM, template="scimV2")
    second, second_job = await _succeeded(harness, SCIM, template="scim")
    app = await ApplicationStore.of(harness.store).get(SCIM)
    assert app is not None
    assert sorted(j.job_id for j in app.jobs) == sorted([first_job, second_job])
    assert sorted(j.template_id for j in app.jobs) == ["scim", "scimV2"]
    assert app.request_ids == [second, first]


async def test_checks_follow_the_job_through_pause_quarantine_and_deletion(
    harness: Harness, redis: Redis, redis_url: str
) -> None:
    settings = worker_settings(harness.sandbox, redis_url, queue_name=harness.settings.queue_name,
                               watch_schedule="10,20,40")  # fmt: skip
    harness.settings = settings
    _, job_id = await _succeeded(harness, SALESFORCE)
    apps = ApplicationStore.of(harness.store)
    admin = TenantAdmin(harness.sandbox)
    async with deps_for(settings, harness, redis) as deps:
        watch = Watch(deps)
        await watch.check(SALESFORCE, job_id)  # the first reading: healthy
        app = await apps.get(SALESFORCE)
        assert app is not None
        assert app.jobs[0].health is Health.HEALTHY
        assert app.jobs[0].status_code == "Active"
        assert app.jobs[0].checked_at is not None
        assert app.jobs[0].last_execution is not None
        assert app.jobs[0].last_execution.state == "Succeeded"
        queue = settings.queue_name
        assert not [m async for m in redis.scan_iter(match=f"{queue}:app-event:*")]  # quiet

        await admin.pause(SALESFORCE, job_id)
        assert await watch.check(SALESFORCE, job_id)
        app = await apps.get(SALESFORCE)
        assert app is not None
        assert app.jobs[0].health is Health.PAUSED
        assert app.jobs[0].step == 0  # a change looks again soon

        await admin.break_credentials(SALESFORCE, job_id)
        deadline = time.monotonic() + 10
        while True:  # the sandbox quarantines the restarted job after its activation delay
            changed = await watch.check(SALESFORCE, job_id)
            app = await apps.get(SALESFORCE)
            assert app is not None
            if app.jobs[0].health is Health.QUARANTINED or time.monotonic() > deadline:
                break
        job = app.jobs[0]
        assert changed
        assert job.health is Health.QUARANTINED, job
        assert job.quarantine is not None
        assert job.quarantine.reason == "EncounteredQuarantineException"
        assert job.quarantine.error is not None
        assert job.quarantine.error.code == "SandboxInvalidCredentials"
        moves = [(c.from_, c.to) for c in job.history]
        # (a restarted job may read "no cycle finished yet" = unknown before its quarantine)
        assert moves[:2] == [(Health.UNKNOWN, Health.HEALTHY), (Health.HEALTHY, Health.PAUSED)]
        assert moves[-1][1] is Health.QUARANTINED
        events = [m async for m in redis.scan_iter(match=f"{queue}:app-event:*")]
        assert len(events) == len(moves) - 1  # all but the quiet first reading are told
        metrics = deps.metrics
        previous = moves[-1][0]
        assert previous is not None
        assert _count(metrics, "provisioner_application_health_changes_total",
                      from_health=previous.value, to_health="quarantined") == 1  # fmt: skip

        await admin.delete(SALESFORCE, job_id)
        assert not await watch.check(SALESFORCE, job_id)  # one 404: confirm first
        app = await apps.get(SALESFORCE)
        assert app is not None
        assert app.jobs[0].watching
        assert app.jobs[0].health is Health.QUARANTINED
        assert await watch.check(SALESFORCE, job_id)
        app = await apps.get(SALESFORCE)
        assert app is not None
        job = app.jobs[0]
        assert (job.health, job.reason, job.watching) == (Health.UNKNOWN, GONE, False)
        assert await redis.zscore(f"{queue}:watch", member(SALESFORCE, job_id)) is None
        assert _count(metrics, "provisioner_watch_checks_total", result="gone") == 2


async def test_a_tick_checks_no_more_than_the_budget(
    harness: Harness, redis: Redis, redis_url: str
) -> None:
    _, job_id = await _succeeded(harness, SCIM, template="scim")
    # (a burst worker with a 1-s cron would never find its queue empty: these are the tick's)
    settings = worker_settings(harness.sandbox, redis_url, queue_name=harness.settings.queue_name,
                               watch_interval_s=1, watch_max_calls_per_s=4)  # fmt: skip
    watch_key = f"{settings.queue_name}:watch"
    now_ms = time.time() * 1000
    await redis.zadd(watch_key, {member(SCIM, job_id): now_ms - 1})
    # ten more due members whose application is unknown: checked, then forgotten
    await redis.zadd(watch_key, {member(SCIM, f"scim.{n}"): now_ms - 1 - n for n in range(10)})
    before = harness.sandbox.stats()["calls"].get("jobs.get", {})
    async with deps_for(settings, harness, redis) as deps:
        began = time.monotonic()
        result = await Watch(deps).tick()
        took = time.monotonic() - began
    after = harness.sandbox.stats()["calls"].get("jobs.get", {})
    calls = sum(after.values()) - sum(before.values())
    assert result.checked == 4
    assert calls == 4
    assert took >= 0.75  # spaced at 0.25 s, not sent at once
    assert await redis.zcard(watch_key) == 11 - 4 + 0  # the rest wait for the next tick


def test_a_job_set_up_for_assigned_users_only_expects_users() -> None:
    """Onboarding with assignments and scope "assigned": the watch reads a cycle that found
    nobody in scope as failing (workers.graph.health.assess(expects_users=True))."""
    from datetime import UTC, datetime

    from service.core.applications import Application
    from service.core.models import Record
    from service.core.specs import AssignmentSpec
    from workers.watch.rules import Schedule, registered

    now = datetime(2026, 12, 1, tzinfo=UTC)
    schedule = Schedule((60, 300), 0.0, 5.0)
    base = {"id": "a" * 32, "service_principal_id": SALESFORCE, "caller": "c", "job_id": "j"}
    group = AssignmentSpec.model_validate({"principalId": "7b2d5c1e-0000-4000-8000-00000000000a"})
    for assignments, scope, expected in [
        ([group], "assigned", True),
        ([group], None, True),
        ([group], "all", False),
        ([], "assigned", False),
    ]:
        app = Application(service_principal_id=SALESFORCE)
        record = Record(**base, assignments=assignments, scope=scope)  # type: ignore[arg-type]
        registered(app, record, now, schedule)
        assert app.jobs[0].expects_users is expected, (assignments, scope)
        assert "expectsUsers" not in app.jobs[0].public()


def test_an_action_after_onboarding_is_watched_like_a_start_and_keeps_its_rules() -> None:
    """A resume, restart or rotation that succeeded puts the job back at the start of the
    schedule like a provisioning did, and keeps what onboarding set up (expects users): an
    action's request names no assignments, which must not loosen the watch (issue 12)."""
    from datetime import UTC, datetime, timedelta

    from service.core.applications import Application
    from service.core.models import AssignmentSpec, Record
    from workers.watch.rules import Schedule, registered

    now = datetime(2026, 12, 1, tzinfo=UTC)
    schedule = Schedule((60, 300, 3600), 0.0, 5.0)
    group = AssignmentSpec.model_validate({"principalId": "7b2d5c1e-0000-4000-8000-00000000000a"})
    base = {"service_principal_id": SALESFORCE, "caller": "c", "job_id": "j"}
    app = Application(service_principal_id=SALESFORCE)
    registered(app, Record(id="a" * 32, **base, assignments=[group]), now, schedule)
    job = app.jobs[0]
    job.step, job.next_check_at = 2, now + timedelta(hours=1)  # far along the schedule
    for n, action in enumerate(("pause", "resume", "restart", "rotateCredentials"), start=1):
        later = now + timedelta(minutes=n)
        record = Record(id=f"{n:032x}", **base, action=action)  # type: ignore[arg-type]
        result = registered(app, record, later, schedule)
        assert job.expects_users is True, action
        assert (job.step, job.watching) == (0, True), action
        assert job.next_check_at == later + timedelta(seconds=55), action  # 60 s less a tick
        assert result.update.watch == {member(SALESFORCE, "j"): later.timestamp() * 1000 + 55000}
        job.step, job.next_check_at = 2, later + timedelta(hours=1)
    again = Record(id="f" * 32, **base)  # a provisioning again, without assignments: it decides
    registered(app, again, now, schedule)
    assert job.expects_users is False


def test_a_deprovisioned_job_leaves_the_application() -> None:
    from datetime import UTC, datetime

    from service.core.applications import Application
    from service.core.models import Record
    from workers.watch.rules import Schedule, deprovisioned, registered

    now = datetime(2026, 12, 1, tzinfo=UTC)
    app = Application(service_principal_id=SALESFORCE)
    made = Record(id="a" * 32, service_principal_id=SALESFORCE, caller="c", job_id="j")
    registered(app, made, now, Schedule((60,), 0.0, 5.0))
    gone = Record(
        id="b" * 32, service_principal_id=SALESFORCE, caller="c", job_id="j", action="deprovision"
    )
    result = deprovisioned(app, gone, now)
    assert app.jobs == []
    assert result.update.watch == {member(SALESFORCE, "j"): None}
    assert app.request_ids[0] == "b" * 32


def test_a_job_left_disabled_or_paused_on_purpose_is_recorded_not_told() -> None:
    """``start: false`` leaves the job disabled, a pause paused: the next reading saying so is
    recorded (health, history) but not told; a later change still is."""
    schedule = Schedule((60, 300), 0.0, 5)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    for action, start, health in (
        ("provision", False, Health.DISABLED),
        ("pause", True, Health.PAUSED),
    ):
        app = Application(service_principal_id=SALESFORCE)
        record = Record(
            id="r1", service_principal_id=SALESFORCE, job_id="j1", template_id="salesforce",
            start=start, action=action, caller="tests", callback_url="https://portal.example/cb",
        )  # fmt: skip
        registered(app, record, now, schedule)
        [job] = app.jobs
        stopped = observed(app, job, Reading(health=health, reason="stopped"), now, schedule)
        assert (job.health, stopped.update.events) == (health, [])
        assert stopped.change is not None  # recorded with its time
        running = observed(app, job, Reading(health=Health.HEALTHY, reason="ok"), now, schedule)
        assert job.health is Health.HEALTHY
        assert [e.health for e in running.update.events] == [Health.HEALTHY]
    # a request that started its job expects it running: a paused first reading is news
    app = Application(service_principal_id=SALESFORCE)
    record = Record(id="r2", service_principal_id=SALESFORCE, job_id="j2", caller="tests")
    registered(app, record, now, schedule)
    paused = observed(app, app.jobs[0], Reading(health=Health.PAUSED, reason="p"), now, schedule)
    assert [e.health for e in paused.update.events] == [Health.PAUSED]
