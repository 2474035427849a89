"""The API's metrics against a real Redis: the queue numbers every replica reads alike (queued,
running, oldest age, callbacks pending, live workers, cool-downs, tenant rates) and the scrape that
sets them."""

from __future__ import annotations

from datetime import timedelta

from redis.asyncio import Redis

from service.api.metrics import ApiMetrics, queue_counters, tenant_rates, throttle_cooldowns
from service.core.fields import utcnow
from service.core.models import State
from service.core.store import Store
from tests.helpers.records import QUEUE, K, rec
from workers.workflow.throttle import AdaptiveRate, Throttle


async def test_the_queue_numbers_come_from_redis(store: Store, redis: Redis) -> None:
    old = rec(created_at=utcnow() - timedelta(seconds=90))
    await store.accept(old)
    await store.accept(rec(sp="00000000-0000-4000-8000-000000000002"))
    running = rec(sp="00000000-0000-4000-8000-000000000003")
    await store.accept(running)
    running.state = State.RUNNING
    await store.save(running)
    await redis.zadd(QUEUE, {"callback:x:3": 1, "writeback:y:4": 2, "not-a-notification": 3})
    await redis.set(K.health_check("worker-1"), "ok", ex=60)
    await redis.set(K.cooldown("tenant-a"), 1, px=5000)
    await redis.set(K.cooldown("tenant-b"), 1, px=20000)
    await redis.set(K.tenant_bucket("tenant-a"), 1)  # not a cool-down, though the same tenant

    counters = await queue_counters(store)

    assert (counters.queued, counters.queue_depth, counters.running) == (2, 2, 1)
    assert 85 <= counters.oldest_queued_age_s < 300
    assert counters.callbacks_pending == 2
    assert counters.workers_alive == 1
    assert [tenant for tenant, _ in counters.cooldowns] == ["tenant-b", "tenant-a"]
    assert counters.throttle_cooldowns == 2


async def test_an_expired_cool_down_is_not_counted(store: Store, redis: Redis) -> None:
    await redis.set(K.cooldown("gone"), 1)  # no TTL: not one the workers honour
    assert await throttle_cooldowns(store) == ()


async def test_a_scrape_sets_the_gauges(store: Store) -> None:
    await store.accept(rec())
    metrics = ApiMetrics()
    await metrics.refresh(store)
    text = metrics.render().decode()
    assert "provisioner_queue_depth 1.0" in text
    assert 'provisioner_requests_in_state{state="queued"} 1.0' in text
    assert "provisioner_oldest_queued_age_seconds" in text


async def test_a_scrape_reports_each_tenants_rate_as_the_throttle_wrote_it(
    store: Store, redis: Redis
) -> None:
    paced = Throttle(redis, QUEUE, "tenant-a", adaptive=AdaptiveRate(start=12.0))
    await paced.acquire()  # the slow start's first slot: a rate, no limit known yet
    fixed = Throttle(redis, QUEUE, "tenant-b", rate_per_s=30.0, adaptive=None)
    await fixed.acquire()  # a configured rate, adaptive off: nothing learned to report

    metrics = ApiMetrics()
    await metrics.refresh(store)
    assert _sample(metrics, "provisioner_tenant_rate", tenant="tenant-a") == 12.0
    assert _sample(metrics, "provisioner_tenant_limit_estimate", tenant="tenant-a") is None
    assert _sample(metrics, "provisioner_tenant_rate", tenant="tenant-b") is None

    for _ in range(20):  # Graph answered 20 calls and said the window is at 80% of its limit
        paced.observe(0.8)
    await paced.acquire()
    await metrics.refresh(store)
    limit = _sample(metrics, "provisioner_tenant_limit_estimate", tenant="tenant-a")
    assert limit == 25.0

    await redis.delete(K.tenant_bucket("tenant-a"))  # forgotten (idle): its series go too
    await metrics.refresh(store)
    assert _sample(metrics, "provisioner_tenant_rate", tenant="tenant-a") is None
    assert await tenant_rates(store) == ()


def _sample(metrics: ApiMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)
