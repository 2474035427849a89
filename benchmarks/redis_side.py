"""Redis's side of the intake benchmark (benchmarks/intake.py): its CPU time and fork count
(from ``INFO``), and another writer on its disk."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis as redis_sync

from tests.helpers.redis_server import RedisServer


def redis_info(redis: RedisServer, section: str) -> dict[str, Any]:
    """One section of Redis's ``INFO``."""
    with redis_sync.Redis.from_url(redis.url) as client:
        return dict(client.info(section))


def redis_cpu_s(redis: RedisServer) -> float:
    """CPU seconds (user + system) Redis has used so far."""
    info = redis_info(redis, "cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def forks_of(redis: RedisServer) -> int:
    """Redis's fork count: with ``save ""`` each fork is an AOF rewrite (auto-aof-rewrite-*)."""
    return int(redis_info(redis, "stats")["total_forks"])


@contextlib.contextmanager
def busy_disk(path: Path, seconds: int) -> Iterator[None]:
    """Another writer on Redis's disk for ``seconds``: ``dd`` writing 64 MiB and fsyncing it,
    over and over (bounded: one 64 MiB file, deleted at the end)."""
    script = (
        f'end=$(( $(date +%s) + {seconds} )); while [ "$(date +%s)" -lt "$end" ]; do '
        f'dd if=/dev/zero of="{path}" bs=1M count=64 conv=fsync status=none; done; rm -f "{path}"'
    )
    proc = subprocess.Popen(["sh", "-c", script])
    try:
        yield
    finally:
        proc.wait(timeout=seconds + 60)
        path.unlink(missing_ok=True)
