"""Per-caller intake rate limit (429 + Retry-After, shared through Redis) and queue cap (503)."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from service.api.ratelimit import IntakeLimits
from tests.api.test_routes import AUTH, BASE, OTHER_AUTH, api_client, make_settings, sp


async def test_rate_limit_is_per_caller_with_retry_after(redis: Redis, redis_url: str) -> None:
    settings = make_settings(redis_url, intake_rate_limit=3, intake_rate_window_s=60)
    async with api_client(settings) as client, api_client(settings) as replica:
        statuses = []
        for n in range(3):
            # Alternate between two API replicas: the limit lives in Redis.
            c = client if n % 2 else replica
            resp = await c.post(BASE, json={"servicePrincipalId": sp(n)}, headers=AUTH)
            statuses.append(resp.status)
        assert statuses == [202, 202, 202]
        resp = await client.post(BASE, json={"servicePrincipalId": sp(9)}, headers=AUTH)
        assert resp.status == 429
        assert resp.content_type == "application/problem+json"
        assert 1 <= int(resp.headers["Retry-After"]) <= 20  # one slot frees every 20 s
        # Reads are not limited, and another caller has its own budget.
        assert (await client.get(BASE, headers=AUTH)).status == 200
        resp = await client.post(BASE, json={"servicePrincipalId": sp(9)}, headers=OTHER_AUTH)
        assert resp.status == 202
        assert await redis.zcard("provisioner:queue") == 4


async def test_rate_limit_frees_up_after_the_interval(redis: Redis) -> None:
    # One slot every 2 s: the takes around the wait fall inside one slot on a loaded machine.
    limits = IntakeLimits(redis, prefix="rl", rate_limit=2, window_s=4, max_queue_depth=0)
    assert [(await limits.take("a")).allowed for _ in range(3)] == [True, True, False]
    await asyncio.sleep(2.05)  # a slot frees (waking up late changes nothing)
    assert (await limits.take("a")).allowed
    assert not (await limits.take("a")).allowed


async def test_queue_depth_cap_is_503(redis: Redis, redis_url: str) -> None:
    async with api_client(make_settings(redis_url, max_queue_depth=2)) as client:
        for n in range(2):
            resp = await client.post(BASE, json={"servicePrincipalId": sp(n)}, headers=AUTH)
            assert resp.status == 202
        resp = await client.post(BASE, json={"servicePrincipalId": sp(3)}, headers=AUTH)
        assert resp.status == 503
        assert int(resp.headers["Retry-After"]) > 0
        assert (await resp.json(content_type=None))["type"].endswith("/queue-full")
        assert await redis.zcard("provisioner:queue") == 2


async def test_queue_cap_counts_provisioning_work_not_callbacks(
    redis: Redis, redis_url: str
) -> None:
    # One caller's failing receiver: many callback retries waiting in arq's queue, and the
    # reconciler's next run. None of it is provisioning work.
    waiting = {f"callback:{n:032x}:5": 1e15 + n for n in range(50)}
    await redis.zadd("provisioner:queue", {**waiting, "cron:reconcile:1": 1e15})
    async with api_client(make_settings(redis_url, max_queue_depth=2)) as client:
        for n in range(2):
            resp = await client.post(BASE, json={"servicePrincipalId": sp(n)}, headers=AUTH)
            assert resp.status == 202, await resp.text()
        resp = await client.post(BASE, json={"servicePrincipalId": sp(3)}, headers=AUTH)
        assert resp.status == 503  # two queued requests fill it
