"""Redis URLs and the connection guard: accepted forms, and a lost Redis as StoreUnavailable."""

from __future__ import annotations

import time

import pytest
from arq import create_pool
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from service.core.errors import StoreUnavailable
from service.core.redis import (
    arq_redis_settings,
    check_redis_url,
    guarded,
    parse_sentinel_url,
    redis_client,
)
from service.core.store import Store
from tests.helpers.records import QUEUE, rec
from tests.helpers.redis_server import free_port


async def test_unreachable_redis_raises_store_unavailable_fast() -> None:
    timeout_s = 2
    client = Redis.from_url(
        f"redis://127.0.0.1:{free_port()}/0",
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
    )
    store = Store(client, queue_name=QUEUE, record_ttl_s=3600)
    started = time.monotonic()
    try:
        with pytest.raises(StoreUnavailable):
            await store.ping()
        with pytest.raises(StoreUnavailable):
            await store.accept(rec())
        with pytest.raises(StoreUnavailable):
            await store.list()
    finally:
        await client.aclose()
    # Refused connections fail at once: three calls well within two socket timeouts (the
    # bound leaves a loaded machine its slack and still catches a retry or a hang).
    assert time.monotonic() - started < 2 * timeout_s


def test_a_sentinel_url_is_split_into_hosts_master_and_db() -> None:
    s = parse_sentinel_url("rediss+sentinel://:p%40ss@s1:26380,s2/mymaster/3")
    assert s.hosts == [("s1", 26380), ("s2", 26379)]
    assert (s.master, s.db, s.password, s.ssl) == ("mymaster", 3, "p@ss", True)
    plain = parse_sentinel_url("redis+sentinel://s1:26379/main")
    assert (plain.db, plain.password, plain.ssl) == (0, None, False)


@pytest.mark.parametrize("url", ["redis+sentinel://s1:26379", "redis+sentinel:///mymaster"])
def test_a_sentinel_url_without_hosts_or_master_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="hosts and a master name"):
        parse_sentinel_url(url)


@pytest.mark.parametrize(
    "url",
    ["redis://h:6379/0", "rediss://h:6380/0", "unix:///run/redis.sock", "redis+sentinel://s/m"],
)
def test_accepted_redis_urls_pass(url: str) -> None:
    assert check_redis_url(url) == url


@pytest.mark.parametrize("url", ["http://h:6379", "h:6379", "redis+sentinel://s1"])
def test_other_redis_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the messages are tested with the settings
        check_redis_url(url)


def test_arq_reads_credentials_and_tls_options_as_redis_py_does() -> None:
    settings = arq_redis_settings(
        "rediss://us%3Aer:p%40ss@h:6380/2?ssl_ca_certs=/ca.pem&ssl_check_hostname=yes"
    )
    assert (settings.host, settings.port, settings.database) == ("h", 6380, 2)
    assert (settings.username, settings.password) == ("us:er", "p@ss")
    assert settings.ssl_ca_certs == "/ca.pem"
    assert settings.ssl_check_hostname is True
    assert settings.conn_retries == 30


async def test_both_clients_reach_a_real_redis_from_one_url(redis_url: str) -> None:
    client = redis_client(redis_url)
    try:
        assert await client.ping()
        await client.set("redis-url-probe", "1")
    finally:
        await client.aclose()
    pool = await create_pool(arq_redis_settings(redis_url))
    try:
        assert await pool.get("redis-url-probe") == b"1"
    finally:
        await pool.aclose()


async def test_guarded_leaves_errors_other_than_a_lost_connection_alone(redis: Redis) -> None:
    await redis.set("a-string", "x")
    with pytest.raises(ResponseError):
        await guarded(lambda: redis.lpush("a-string", "y"))  # type: ignore[misc]
