"""Redis connections from one URL, for the API (redis-py) and the workers (arq) alike, and the
one wrapper that turns a lost connection into :class:`~service.core.errors.StoreUnavailable`.

Accepted forms::

    redis://[:password@]host:6379/0           plain TCP
    rediss://[:password@]host:6380/0          TLS (managed Redis); options in the query:
        ?ssl_ca_certs=/etc/ssl/redis-ca.pem   a private CA (default: the system's CAs)
        &ssl_check_hostname=true              also match the certificate to the host name
        &ssl_certfile=...&ssl_keyfile=...     a client certificate (mutual TLS)
    unix:///run/redis.sock?db=0               a local socket
    redis+sentinel://[:password@]s1:26379,s2:26379/mymaster/0
    rediss+sentinel://...                     Sentinel, TLS to the master

With Sentinel the clients ask the sentinels for the current master and follow a failover.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from arq.connections import RedisSettings
from redis.asyncio import Redis
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.core.errors import StoreUnavailable

T = TypeVar("T")

SENTINEL_SCHEMES = frozenset({"redis+sentinel", "rediss+sentinel"})
SCHEMES = frozenset({"redis", "rediss", "unix"}) | SENTINEL_SCHEMES
#: rediss:// query options passed on to the TLS connection (redis-py's names).
TLS_QUERY_OPTIONS = frozenset({"ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs"})
_TRUE = frozenset({"1", "true", "yes", "on"})


@dataclass(frozen=True, slots=True)
class SentinelUrl:
    """The parts of a ``redis+sentinel://`` URL."""

    hosts: list[tuple[str, int]]
    master: str
    db: int
    password: str | None
    ssl: bool


def parse_sentinel_url(url: str) -> SentinelUrl:
    """Split a Sentinel URL; raises ValueError naming what is wrong."""
    parts = urlsplit(url)
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    password = unquote(userinfo.partition(":")[2]) if userinfo else None
    hosts: list[tuple[str, int]] = []
    for item in filter(None, hostlist.split(",")):
        host, _, port = item.rpartition(":") if ":" in item else (item, "", "26379")
        hosts.append((host, int(port or 26379)))
    segments = [s for s in parts.path.split("/") if s]
    if not hosts or not segments:
        raise ValueError(
            "a Sentinel URL needs hosts and a master name: redis+sentinel://h:26379/mymaster/0"
        )
    db = int(segments[1]) if len(segments) > 1 else 0
    return SentinelUrl(hosts, segments[0], db, password or None, parts.scheme.startswith("rediss"))


def redis_client(url: str, **options: Any) -> Redis:
    """A redis-py asyncio client for any accepted URL (``options`` go to the connection)."""
    if urlsplit(url).scheme in SENTINEL_SCHEMES:
        s = parse_sentinel_url(url)
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            s.hosts, sentinel_kwargs={"password": s.password}, **options
        )
        master: Redis = sentinel.master_for(s.master, db=s.db, password=s.password, ssl=s.ssl)
        return master
    client: Redis = Redis.from_url(url, **options)
    return client


def arq_redis_settings(url: str) -> RedisSettings:
    """arq's connection settings for any accepted URL."""
    if urlsplit(url).scheme in SENTINEL_SCHEMES:
        s = parse_sentinel_url(url)
        return RedisSettings(
            host=s.hosts,
            sentinel=True,
            sentinel_master=s.master,
            database=s.db,
            password=s.password,
            ssl=s.ssl,
            conn_retries=30,
        )
    settings = RedisSettings.from_dsn(url)
    # arq's from_dsn neither unquotes credentials nor reads TLS options from the query string,
    # which redis-py (the API) does: apply them so both clients read one URL alike.
    parts = urlsplit(url)
    if parts.username:
        settings.username = unquote(parts.username)
    if parts.password:
        settings.password = unquote(parts.password)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    for name in TLS_QUERY_OPTIONS & query.keys():
        setattr(settings, name, query[name])
    if "ssl_check_hostname" in query:
        settings.ssl_check_hostname = query["ssl_check_hostname"].lower() in _TRUE
    # Keep trying for ~30 s at start-up (a worker started just before Redis comes up).
    settings.conn_retries = 30
    return settings


async def guarded(call: Callable[[], Awaitable[T]]) -> T:
    """Run a Redis call, turning connection-level failures into :class:`StoreUnavailable`."""
    try:
        return await call()
    except (RedisConnectionError, RedisTimeoutError, OSError) as e:
        raise StoreUnavailable(f"Redis is unreachable: {type(e).__name__}") from e


def check_redis_url(value: str) -> str:
    """``value`` when its scheme is one of the accepted forms (a Sentinel URL parsed too)."""
    scheme = urlsplit(value).scheme
    if scheme not in SCHEMES:
        raise ValueError(
            "must start with redis://, rediss://, unix://, redis+sentinel:// or rediss+sentinel://"
        )
    if scheme in SENTINEL_SCHEMES:
        parse_sentinel_url(value)
    return value
