"""Applications in Redis: a record, its indexes and the watch set written together, the
watch's leases, and the paged listing."""

from __future__ import annotations

import time

from redis.asyncio import Redis

from service.core.application_store import (
    HEALTH_CALLBACK_FUNCTION,
    HEALTH_WRITEBACK_FUNCTION,
    ApplicationStore,
    member,
)
from service.core.applications import (
    Application,
    HealthEvent,
)
from service.core.fields import utcnow
from service.core.health import Health
from service.core.keys import Keys, job_key
from service.core.models import Record
from service.core.queue import job_deserializer
from tests.core.test_applications import HEALTHY, QUARANTINED, SCHEDULE, SP, _record
from workers.watch.rules import observed, registered


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
