"""Applications: the schedule table, the watch's rules and the store on a real Redis."""

from __future__ import annotations

import random
import time
import uuid
from datetime import timedelta

import pytest
from redis.asyncio import Redis

from service.core.application_store import (
    HEALTH_CALLBACK_FUNCTION,
    HEALTH_WRITEBACK_FUNCTION,
    ApplicationStore,
    member,
)
from service.core.applications import (
    GONE,
    NOT_CHECKED,
    Application,
    HealthEvent,
    QuarantineView,
    Reading,
    first_delay_s,
    next_delay_s,
)
from service.core.errors import ConfigError
from service.core.fields import utcnow
from service.core.health import Health
from service.core.keys import Keys, job_key
from service.core.models import Record, State
from service.core.queue import job_deserializer
from service.core.settings import load_settings
from workers.watch.rules import Schedule, missing, observed, registered, unreadable

SP = "6f1c3b9e-2a4d-4c8e-9b1f-0d2e3f4a5b6c"
DEFAULT = (60, 300, 900, 3600, 21600)


# the schedule table --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("step", "base"), [(0, 60), (1, 300), (2, 900), (3, 3600), (4, 21600), (5, 21600), (99, 21600)]
)
def test_each_step_waits_its_delay_shortened_by_at_most_the_jitter(step: int, base: int) -> None:
    rng = random.Random(7)
    delays = [next_delay_s(DEFAULT, step, 0.1, rng) for _ in range(500)]
    assert all(base * 0.9 <= d <= base for d in delays)
    assert max(delays) - min(delays) > base * 0.05  # really spread, not a constant
    assert next_delay_s(DEFAULT, step, 0.0) == base


def test_first_check_comes_within_the_first_delay_less_a_tick() -> None:
    rng = random.Random(1)
    assert all(first_delay_s(DEFAULT, 5, 0.1, rng) <= 55 for _ in range(500))
    assert first_delay_s((2, 4), 5, 0.0) == 1.0  # never below a second


def test_settings_read_the_schedule_and_refuse_a_late_first_check() -> None:
    settings = load_settings(watch_schedule="30, 120,600")
    assert settings.watch_schedule == (30, 120, 600)
    assert load_settings().watch_schedule == DEFAULT
    with pytest.raises(ConfigError, match="PROVISIONER_WATCH_SCHEDULE: the first check"):
        load_settings(watch_schedule="300,600")
    with pytest.raises(ConfigError, match="PROVISIONER_WATCH_SCHEDULE: expected"):
        load_settings(watch_schedule="1m,5m")
    with pytest.raises(ConfigError, match="PROVISIONER_WATCH_SCHEDULE: needs"):
        load_settings(watch_schedule="0")


def test_ten_thousand_jobs_on_the_default_schedule_fit_the_default_cap() -> None:
    settings = load_settings()
    steady_calls_per_s = 10_000 / (DEFAULT[-1] * (1 - settings.watch_jitter))
    assert 0.46 < 10_000 / DEFAULT[-1] < 0.47
    assert steady_calls_per_s < settings.watch_max_calls_per_s


# the rules -----------------------------------------------------------------------------------
def _record(job_id: str = "scim.job1", **extra: object) -> Record:
    return Record(
        id=uuid.uuid4().hex,
        service_principal_id=SP,
        state=State.SUCCEEDED,
        template_id="scim",
        job_id=job_id,
        caller="alpha",
        callback_url="https://portal.example/cb",
        **extra,  # type: ignore[arg-type]
    )


SCHEDULE = Schedule((10, 20, 40), 0.0, 1, random.Random(0))
QUARANTINED = Reading(
    health=Health.QUARANTINED,
    reason="quarantined (EncounteredQuarantineException)",
    schedule_state="Active",
    status_code="Paused",
    quarantine=QuarantineView(reason="EncounteredQuarantineException"),
)
HEALTHY = Reading(health=Health.HEALTHY, reason="scheduled and running", status_code="Active")


def test_a_request_registers_its_job_and_a_change_resets_the_schedule() -> None:
    app = Application(service_principal_id=SP)
    now = utcnow()
    record = _record()
    result = registered(app, record, now, SCHEDULE)
    job = app.job("scim.job1")
    assert job is not None
    assert job.health is Health.UNKNOWN
    assert job.reason == NOT_CHECKED
    assert job.next_check_at == now + timedelta(seconds=9)  # first delay less one tick
    assert result.update.watch == {
        member(SP, "scim.job1"): (now + timedelta(seconds=9)).timestamp() * 1000
    }
    assert app.request_ids == [record.id]
    assert app.callers == ["alpha"]

    first = observed(app, job, HEALTHY, now, SCHEDULE)  # what the request said: no event
    assert first.change is not None
    assert first.update.events == []
    assert job.step == 0
    assert job.next_check_at == now + timedelta(seconds=10)
    same = observed(app, job, HEALTHY, now, SCHEDULE)
    assert same.change is None
    assert job.step == 1
    observed(app, job, HEALTHY, now, SCHEDULE)
    observed(app, job, HEALTHY, now, SCHEDULE)
    assert job.step == 2  # the last delay repeats

    later = now + timedelta(minutes=5)
    changed = observed(app, job, QUARANTINED, later, SCHEDULE)
    assert changed.change is not None
    assert (changed.change.from_, changed.change.to) == (Health.HEALTHY, Health.QUARANTINED)
    assert job.step == 0
    assert job.next_check_at == later + timedelta(seconds=10)
    assert job.health_since == later
    assert job.history[-1] == changed.change
    [event] = changed.update.events
    assert event.health is Health.QUARANTINED
    assert event.previous is Health.HEALTHY
    assert event.callback_url == "https://portal.example/cb"
    assert event.request_id == record.id


def test_a_first_reading_that_contradicts_the_request_is_told() -> None:
    app = Application(service_principal_id=SP)
    registered(app, _record(), utcnow(), SCHEDULE)
    job = app.job("scim.job1")
    assert job is not None
    assert observed(app, job, QUARANTINED, utcnow(), SCHEDULE).update.events


def test_a_404_is_confirmed_then_the_job_is_gone_and_not_watched() -> None:
    app = Application(service_principal_id=SP)
    now = utcnow()
    registered(app, _record(), now, SCHEDULE)
    job = app.job("scim.job1")
    assert job is not None
    observed(app, job, HEALTHY, now, SCHEDULE)
    once = missing(app, job, now, SCHEDULE)
    assert once.change is None
    assert job.watching
    assert job.health is Health.HEALTHY
    assert job.next_check_at == now + timedelta(seconds=10)
    again = missing(app, job, now + timedelta(seconds=10), SCHEDULE)
    assert again.change is not None
    assert again.change.to is Health.UNKNOWN
    assert job.reason == GONE
    assert not job.watching
    assert job.next_check_at is None
    assert again.update.watch == {member(SP, "scim.job1"): None}
    assert again.update.events[0].reason == GONE
    # a 404 then a reading clears the suspicion
    registered(app, _record(), now, SCHEDULE)
    missing(app, job, now, SCHEDULE)
    observed(app, job, HEALTHY, now, SCHEDULE)
    assert job.missing_since is None
    assert job.watching


def test_a_check_that_read_nothing_keeps_the_health_and_the_step() -> None:
    app = Application(service_principal_id=SP)
    now = utcnow()
    registered(app, _record(), now, SCHEDULE)
    job = app.job("scim.job1")
    assert job is not None
    observed(app, job, HEALTHY, now, SCHEDULE)
    observed(app, job, HEALTHY, now, SCHEDULE)
    result = unreadable(app, job, "HTTP 503 ServiceUnavailable", None, now, SCHEDULE)
    assert result.change is None
    assert job.health is Health.HEALTHY
    assert job.step == 1
    assert job.last_error == "HTTP 503 ServiceUnavailable"
    assert job.next_check_at == now + timedelta(seconds=20)
    unreadable(app, job, "tenant throttle", 3.0, now, SCHEDULE)
    assert job.next_check_at == now + timedelta(seconds=3)


# the store -----------------------------------------------------------------------------------
def _store(redis: Redis) -> ApplicationStore:
    return ApplicationStore(redis, Keys("t"))


async def _register(
    apps: ApplicationStore, sp: str, caller: str = "alpha", **extra: object
) -> Record:
    record = _record(**extra).model_copy(update={"service_principal_id": sp, "caller": caller})
    await apps.update(
        sp, lambda app: registered(app, record, utcnow(), SCHEDULE).update, create=True
    )
    return record


async def test_update_writes_the_record_its_indexes_and_the_watch_set(redis: Redis) -> None:
    apps = _store(redis)
    assert await apps.update(SP, lambda app: None) is None  # nothing to change without create
    record = await _register(apps, SP)
    stored = await apps.get(SP)
    assert stored is not None
    assert stored.request_ids == [record.id]
    assert await redis.zrange("t:apps", 0, -1) == [SP.encode()]
    assert await redis.zrange("t:apps:health:unknown", 0, -1) == [SP.encode()]
    [(name, score)] = await redis.zrange("t:watch", 0, -1, withscores=True)
    assert name.decode() == member(SP, "scim.job1")
    assert 0 < score / 1000 - time.time() <= 9.5

    def quarantine(app: Application):  # type: ignore[no-untyped-def]
        job = app.job("scim.job1")
        assert job is not None
        return observed(app, job, QUARANTINED, utcnow(), SCHEDULE).update

    await apps.update(SP, quarantine)
    assert await redis.zrange("t:apps:health:unknown", 0, -1) == []
    assert await redis.zrange("t:apps:health:quarantined", 0, -1) == [SP.encode()]
    counts = await apps.counts()
    assert counts.by_health[Health.QUARANTINED] == 1
    assert counts.watched_jobs == 1
    # the event and its callback job were written in the same transaction
    events = [k async for k in redis.scan_iter(match="t:app-event:*")]
    assert len(events) == 1
    event_id = events[0].decode().rsplit(":", 1)[1]
    event = await apps.event(event_id)
    assert isinstance(event, HealthEvent)
    assert event.health is Health.QUARANTINED
    queued = {m.decode() for m in await redis.zrange("t", 0, -1)}
    assert queued == {f"healthcb:{event_id}"}  # no ticket: the caller is not a webhook
    job = job_deserializer(await redis.get(job_key(f"healthcb:{event_id}")))
    assert job["f"] == HEALTH_CALLBACK_FUNCTION
    assert job["a"] == [event_id]


async def test_a_webhook_request_gets_a_ticket_note_too(redis: Redis) -> None:
    apps = _store(redis)
    await _register(apps, SP, caller="webhook:jira", external_reference="OPS-1")

    def quarantine(app: Application):  # type: ignore[no-untyped-def]
        job = app.job("scim.job1")
        assert job is not None
        observed(app, job, HEALTHY, utcnow(), SCHEDULE)
        return observed(app, job, QUARANTINED, utcnow(), SCHEDULE).update

    await apps.update(SP, quarantine)
    functions = {
        job_deserializer(await redis.get(job_key(m.decode())))["f"]
        for m in await redis.zrange("t", 0, -1)
    }
    assert functions == {HEALTH_CALLBACK_FUNCTION, HEALTH_WRITEBACK_FUNCTION}


async def test_claim_due_leases_the_most_overdue_first(redis: Redis) -> None:
    apps = _store(redis)
    now_ms = time.time() * 1000
    await redis.zadd(
        "t:watch", {"a:1": now_ms - 3000, "b:1": now_ms - 1000, "c:1": now_ms + 60_000}
    )
    assert await apps.claim_due(now_ms, 1, 30_000) == [("a", "1")]
    assert await apps.claim_due(now_ms, 5, 30_000) == [("b", "1")]  # a is leased, c not due
    assert await apps.claim_due(now_ms + 31_000, 5, 30_000) == [("a", "1"), ("b", "1")]


async def test_list_pages_by_principal_and_filters_by_health_and_visibility(redis: Redis) -> None:
    apps = _store(redis)
    principals = [f"00000000-0000-4000-8000-{n:012d}" for n in range(7)]
    for n, sp in enumerate(principals):
        await _register(apps, sp, caller="alpha" if n % 2 == 0 else "beta")
    mine = lambda app: "alpha" in app.callers  # noqa: E731
    page, cursor = await apps.list(visible=mine, limit=2)
    seen = [a.service_principal_id for a in page]
    while cursor:
        page, cursor = await apps.list(visible=mine, cursor=cursor, limit=2)
        seen += [a.service_principal_id for a in page]
    assert seen == principals[0::2]
    assert (await apps.list(health=Health.QUARANTINED))[0] == []
    assert len((await apps.list(health=Health.UNKNOWN, limit=50))[0]) == 7
