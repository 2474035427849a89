"""The e2e tests' stack: the API and its workers as processes over a Redis of their own.

- :func:`e2e_stack`: a fresh Redis (AOF on) and sandbox (seed and fault profile given), the API
  and two workers, with the fast waits the e2e suites use; a fixture yields it.
- :func:`api_and_worker`: the API and one worker over a Redis and a sandbox the test made
  itself (its env names them); the API starts in a thread so the test's own loop keeps serving
  the fakes it called (a Jira, an OTLP collector) meanwhile.
- :func:`submit` and :func:`wait_terminal`: one request posted, and the records of many
  followed until they end.

Either stack stops what it started, and the Redis, whatever the test body raised.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from service.core.config_values import hash_api_key
from service.core.crypto import new_encryption_key
from tests.helpers.processes import Child, start_api, start_worker
from tests.helpers.redis_server import RedisServer
from tests.helpers.sandbox import SandboxProcess, start_sandbox


@dataclass
class Stack:
    """What :func:`e2e_stack` started."""

    sandbox: SandboxProcess
    api: Child
    base: str
    workers: list[Child]

    @property
    def children(self) -> list[Child]:
        return [self.api, *self.workers]


@contextmanager
def e2e_stack(
    tmp_path: Path,
    *,
    api_key: str,
    queue: str,
    seed: Mapping[str, Any],
    faults: Mapping[str, Any],
    workers: int = 2,
    **settings: str,
) -> Iterator[Stack]:
    """A sandbox, Redis, the API (caller ``e2e`` with ``api_key``) and ``workers`` workers;
    ``settings`` are more ``PROVISIONER_*`` variables (or overrides of the defaults here)."""
    redis = RedisServer(tmp_path / "redis", appendonly=True)
    redis.start()
    sandbox = start_sandbox(tmp_path / "sandbox", seed=dict(seed), faults=dict(faults))
    env = {
        **sandbox.env(),
        "PROVISIONER_REDIS_URL": redis.url,
        "PROVISIONER_API_KEYS": f"e2e:{hash_api_key(api_key)}",
        "PROVISIONER_ENCRYPTION_KEY": new_encryption_key(),
        "PROVISIONER_QUEUE_NAME": queue,
        "PROVISIONER_VERIFY_POLL_S": "0.2",
        "PROVISIONER_BACKOFF_BASE_S": "0.2",
        "PROVISIONER_BACKOFF_CAP_S": "2",
        "PROVISIONER_LOG_FORMAT": "json",
        **settings,
    }
    started: list[Child] = []
    try:
        api, base = start_api(env, tmp_path)
        started.append(api)
        for i in range(workers):
            started.append(start_worker(env, tmp_path, name=f"worker-{i}"))
        yield Stack(sandbox, api, base, started[1:])
    finally:
        for child in reversed(started):
            child.stop()
        sandbox.stop()
        redis.stop()


@asynccontextmanager
async def api_and_worker(
    env: Mapping[str, str], log_dir: Path, redis: RedisServer
) -> AsyncIterator[str]:
    """The API's base URL while it and one worker run over ``redis`` (stopped on exit)."""
    try:
        api, base = await asyncio.to_thread(start_api, env, log_dir)
    except RuntimeError:
        redis.stop()
        raise
    worker = start_worker(env, log_dir)
    try:
        yield base
    finally:
        worker.stop()
        api.stop()
        redis.stop()


async def submit(session: aiohttp.ClientSession, base: str, body: dict[str, Any]) -> str:
    """POST one provisioning request; its id (a 202 with its Location, or the test fails)."""
    async with session.post(f"{base}/v1/provisioning-requests", json=body) as resp:
        assert resp.status == 202, await resp.text()
        assert resp.headers["Location"].startswith("/v1/provisioning-requests/")
        return str((await resp.json())["id"])


async def wait_terminal(
    session: aiohttp.ClientSession, base: str, ids: list[str], timeout_s: float
) -> dict[str, dict[str, Any]]:
    """The records of ``ids`` that ended within ``timeout_s``, by id (polled every 0.5 s)."""
    deadline = time.monotonic() + timeout_s
    done: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline and len(done) < len(ids):
        for rid in ids:
            if rid in done:
                continue
            async with session.get(f"{base}/v1/provisioning-requests/{rid}") as resp:
                record = await resp.json()
            if record["state"] in {"succeeded", "failed", "cancelled"}:
                done[rid] = record
        await asyncio.sleep(0.5)
    return done
