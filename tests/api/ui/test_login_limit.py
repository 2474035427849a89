"""The sign-in limit: per client address, in Redis, then a 429 page with Retry-After."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from service.api.ui.session import SESSION_COOKIE
from tests.api.test_routes import API_KEY, api_client, make_settings
from tests.helpers.ui import K, login


async def test_the_eleventh_attempt_in_a_minute_is_429(
    client: TestClient[Any, Any], redis: Redis
) -> None:
    for n in range(10):
        assert (await login(client, f"wrong-key-{n}")).status == 401, n
    resp = await login(client, API_KEY)  # even the right key, once over the limit
    assert resp.status == 429
    assert "text/html" in resp.headers["Content-Type"]
    assert SESSION_COOKIE not in resp.cookies
    retry_after = int(resp.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    text = await resp.text()
    assert "Too many sign-in attempts" in text
    assert f"try again in {retry_after} s" in text
    # One counter for this client's address, expiring with the window.
    [key] = [k.decode() async for k in redis.scan_iter(match=K.ui_login_attempts("*"))]
    assert key == K.ui_login_attempts("127.0.0.1")
    assert 0 < await redis.pttl(key) <= 60_000
    # The window over (its key expired), sign-in works again.
    await redis.delete(key)
    assert (await login(client)).status == 303


async def test_successful_sign_ins_count_too_and_the_limit_can_be_off(
    redis: Redis, redis_url: str
) -> None:
    async with api_client(make_settings(redis_url, ui_login_rate_limit=2)) as client:
        assert (await login(client)).status == 303
        assert (await login(client)).status == 303
        assert (await login(client)).status == 429
    async with api_client(make_settings(redis_url, ui_login_rate_limit=0)) as client:
        for _ in range(15):
            assert (await login(client, "wrong")).status == 401
