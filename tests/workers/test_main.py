"""The worker process's supervision: what counts as a lost Redis (workers/main.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import WatchError

from tests.helpers.redis_server import RedisServer
from workers.main import lost_redis


async def test_a_connection_dropped_mid_watch_is_a_lost_redis(tmp_path: Path) -> None:
    """arq's start_jobs WATCHes a job's in-progress key; a Redis killed then surfaces as a
    WatchError, which must rebuild the worker like any lost connection, not end the process."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    client = Redis.from_url(server.url)
    try:
        async with client.pipeline(transaction=True) as pipe:
            await pipe.watch("in-progress")
            server.kill()
            with pytest.raises(WatchError) as caught:
                await pipe.exists("in-progress")
    finally:
        await client.aclose()
        server.stop()
    assert lost_redis(caught.value)
    assert lost_redis(RedisConnectionError("gone"))
    assert not lost_redis(WatchError("Watched variable changed."))  # a real conflict
    assert not lost_redis(ValueError("a bug"))
