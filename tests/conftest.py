"""Shared fixtures: one real redis-server per test session, flushed before each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from service.core.store import Store
from tests.helpers.harness import Harness, worker_settings
from tests.helpers.records import new_store
from tests.helpers.redis_server import RedisServer
from tests.helpers.sandbox import SandboxProcess, start_sandbox


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(Path(tmp_path_factory.mktemp("redis")))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    proc = start_sandbox(
        Path(tmp_path_factory.mktemp("sandbox")), faults={"activation_delay_ms": 100}
    )
    yield proc
    proc.stop()


@pytest.fixture
def fresh_sandbox(sandbox: SandboxProcess) -> SandboxProcess:
    sandbox.reset()
    return sandbox


@pytest.fixture
def harness(fresh_sandbox: SandboxProcess, redis: Redis, redis_url: str) -> Harness:
    return Harness(worker_settings(fresh_sandbox, redis_url), redis, fresh_sandbox)


@pytest.fixture
async def store(redis: Redis) -> Store:
    """A fresh store over the test's Redis (flushed per test by the ``redis`` fixture)."""
    return new_store(redis)
