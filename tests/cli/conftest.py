"""Fixtures of the CLI tests: the real API on a local port over the test's Redis."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from tests.api.test_routes import api_client, make_settings


@pytest.fixture
async def base(redis: Redis, redis_url: str) -> Any:
    """The API's base URL (callers alpha and beta of tests/api/test_routes.py)."""
    async with api_client(make_settings(redis_url)) as client:
        yield str(client.make_url("")).rstrip("/")
