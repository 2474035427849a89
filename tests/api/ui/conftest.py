"""The status page's tests run the real app on a local port against the real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from tests.api.test_routes import api_client, make_settings


@pytest.fixture
async def client(redis: Redis, redis_url: str) -> AsyncIterator[TestClient[Any, Any]]:
    async with api_client(make_settings(redis_url)) as c:
        yield c
