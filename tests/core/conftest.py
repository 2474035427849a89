"""Fixtures of the core tests: a store over the session's real Redis."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from service.core.store import Store
from tests.helpers.records import new_store


@pytest.fixture
async def store(redis: Redis) -> Store:
    """A fresh store over the test's Redis (flushed per test by the ``redis`` fixture)."""
    return new_store(redis)
