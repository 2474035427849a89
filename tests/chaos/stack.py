"""What the chaos tests share: real processes (Redis, the sandbox, API, workers), short settings
so recovery bounds are seconds, and small helpers to watch records and kill at the right moment.

Settings: ``PROVISIONER_STEP_TIMEOUT_S=6`` makes arq's in-progress key live 6 + 10 = 16 s, so a
job whose worker was SIGKILLed runs again ~16 s after its run began (``CALLBACK_TIMEOUT_S=1``
keeps the callback functions' timeout, 1 + 5 s, from raising that bound).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from redis.asyncio import Redis

from service.core.config_values import hash_api_key
from service.core.crypto import new_encryption_key
from service.core.models import Record
from service.core.store import Store
from tests.helpers.processes import REPO_ROOT, Child, start_api, start_worker
from tests.helpers.sandbox import SandboxProcess, start_sandbox

T = TypeVar("T")
REDIS_CONF = REPO_ROOT / "deploy" / "redis.conf"
API_KEY = "pk_chaos-test-key-0123456789abcdef"
STEP_TIMEOUT_S = 6
RECOVERY_S = STEP_TIMEOUT_S + 10  # arq's in-progress key: the longest job timeout + 10 s
TENANT = "7c1f0a52-2f6a-4d33-9b1e-5a4c3d2e1f00"
SEED = {
    "tenantId": TENANT,
    "applications": [
        {
            "clientId": "3d9e8f7a-6b5c-4d3e-2f1a-0b9c8d7e6f5a",
            "clientSecret": "chaos-client-secret-Qm8vT2xR5pLk",
            "roles": ["Synchronization.ReadWrite.All"],
        }
    ],
    "servicePrincipals": [],
    "generate": {"count": 12, "templates": [{"id": "scim", "default": True}]},
}
ENCRYPTION_KEY = new_encryption_key()
SETTINGS_ENV = {
    "PROVISIONER_STEP_TIMEOUT_S": str(STEP_TIMEOUT_S),
    "PROVISIONER_CALLBACK_TIMEOUT_S": "1",
    "PROVISIONER_INPROCESS_WAIT_S": "2",
    "PROVISIONER_BACKOFF_BASE_S": "0.2",
    "PROVISIONER_BACKOFF_CAP_S": "1",
    "PROVISIONER_VERIFY_POLL_S": "0.2",
    "PROVISIONER_VERIFY_SETTLE_S": "1",
    "PROVISIONER_VERIFY_TIMEOUT_S": "30",
    "PROVISIONER_HEALTH_CHECK_INTERVAL_S": "2",
    "PROVISIONER_RECONCILE_INTERVAL_S": "5",
    "PROVISIONER_LOG_FORMAT": "json",
    "PROVISIONER_API_KEYS": f"chaos:{hash_api_key(API_KEY)}",
    "PROVISIONER_ENCRYPTION_KEY": ENCRYPTION_KEY,
}
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


def chaos_sandbox(state_dir: Path, **faults: Any) -> SandboxProcess:
    """A sandbox with the chaos seed (12 generated principals, one default template each)."""
    return start_sandbox(state_dir, seed=SEED, faults={"activation_delay_ms": 100, **faults})


def env_for(sandbox: SandboxProcess, redis_url: str, queue: str, **extra: str) -> dict[str, str]:
    """The PROVISIONER_* environment of an API or worker in a chaos test."""
    return {
        **sandbox.env(),
        **SETTINGS_ENV,
        "PROVISIONER_REDIS_URL": redis_url,
        "PROVISIONER_QUEUE_NAME": queue,
        **extra,
    }


class Processes:
    """Children started by a test, stopped (SIGTERM, then SIGKILL) at its end."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[Child] = []

    def worker(self, env: dict[str, str], name: str) -> Child:
        child = start_worker({"PROVISIONER_WORKER_NAME": name, **env}, self.log_dir, name=name)
        self.children.append(child)
        return child

    def api(self, env: dict[str, str], name: str = "api") -> str:
        child, base = start_api(env, self.log_dir, name=name)
        self.children.append(child)
        return base

    def stop(self) -> None:
        for child in self.children:
            child.stop(timeout_s=10)

    def logs(self) -> str:
        return "\n".join(f"--- {c.name}\n{c.log()[-3000:]}" for c in self.children)


@contextlib.contextmanager
def processes(log_dir: Path) -> Iterator[Processes]:
    procs = Processes(log_dir)
    try:
        yield procs
    except BaseException:
        print(procs.logs())
        raise
    finally:
        procs.stop()


def kill9(child: Child) -> None:
    """SIGKILL: no cleanup, no signal handler, like a crash or an OOM kill."""
    os.kill(child.proc.pid, signal.SIGKILL)
    child.proc.wait()


async def wait_for(
    probe: Callable[[], Awaitable[T | None]], timeout_s: float, interval_s: float = 0.05
) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(interval_s)


async def worker_up(redis: Redis, queue: str, name: str, timeout_s: float = 20) -> None:
    """Wait for a worker's first heartbeat (its per-worker arq health key)."""

    async def beating() -> bool:
        return bool(await redis.exists(f"{queue}:health-check:{name}"))

    await wait_for(beating, timeout_s, interval_s=0.1)


class Records:
    """Reads (and for the tests that need it, writes) records of one queue straight from Redis."""

    def __init__(self, redis: Redis, queue: str) -> None:
        self.redis = redis
        self.queue = queue
        self.store = Store(redis, queue_name=queue, record_ttl_s=3600)

    async def get(self, request_id: str) -> Record:
        record = await self.store.get(request_id)
        assert record is not None, request_id
        return record

    async def done_steps(self, request_id: str) -> list[str]:
        record = await self.get(request_id)
        return [h.step.value for h in record.history if h.step and record.done(h.step)]

    async def has_done(self, request_id: str, step: str) -> bool:
        return step in await self.done_steps(request_id)

    async def submit(self, sp: str) -> str:
        """Accept a request the way the API does (record + arq job in one MULTI/EXEC)."""
        record = Record(id=uuid.uuid4().hex, service_principal_id=sp, caller="chaos")
        _, created = await self.store.accept(record)
        assert created
        return record.id

    async def terminal(self, request_id: str, timeout_s: float) -> Record:
        async def probe() -> Record | None:
            record = await self.get(request_id)
            return record if record.state.terminal else None

        return await wait_for(probe, timeout_s, interval_s=0.2)


class Api:
    """The intake API over HTTP, as a caller sees it."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    @staticmethod
    def new_session(timeout_s: float = 10) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        )

    async def call(
        self, method: str, path: str, body: Any = None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        async with self.session.request(method, self.base + path, json=body) as resp:
            text = await resp.text()
            return resp.status, (json.loads(text) if text else {}), dict(resp.headers)

    async def submit(self, sp: str) -> str:
        status, body, _ = await self.call(
            "POST", "/v1/provisioning-requests", {"servicePrincipalId": sp}
        )
        assert status == 202, (status, body)
        return str(body["id"])

    async def get(self, request_id: str) -> dict[str, Any]:
        status, body, _ = await self.call("GET", f"/v1/provisioning-requests/{request_id}")
        assert status == 200, (status, body)
        return body

    async def terminal(self, request_id: str, timeout_s: float) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            body = await self.get(request_id)
            return body if body["state"] in TERMINAL else None

        return await wait_for(probe, timeout_s, interval_s=0.2)


def one_started_job(sandbox: SandboxProcess, sp: str) -> str:
    """Assert the principal has exactly one synchronization job, started exactly once."""
    stats = sandbox.stats()
    jobs = stats["jobs"].get(sp, [])
    assert len(jobs) == 1, (sp, jobs)
    assert stats["starts"].get(jobs[0]["id"]) == 1, (sp, stats["starts"])
    return str(jobs[0]["id"])


def arrived(sandbox: SandboxProcess, route: str) -> int:
    """How many calls of a Graph route reached the sandbox, answered or still in flight."""
    return int(sandbox.stats().get("arrived", {}).get(route, 0))


def calls(sandbox: SandboxProcess, route: str) -> int:
    """How many calls of a Graph route the sandbox answered (any status)."""
    return int(sum(sandbox.stats()["calls"].get(route, {}).values()))


async def settled(sandbox: SandboxProcess, timeout_s: float = 60) -> None:
    """Wait until the sandbox has answered as many calls of each route as had reached it when
    this was called: a call in flight when its worker was killed has then had its effect (a
    job made, a start counted). Calls wait the same latency, so they are answered in order."""
    arrived_then = dict((await asyncio.to_thread(sandbox.stats)).get("arrived", {}))

    async def answered() -> bool:
        now = (await asyncio.to_thread(sandbox.stats))["calls"]
        return all(sum(now.get(r, {}).values()) >= n for r, n in arrived_then.items())

    await wait_for(answered, timeout_s, interval_s=0.1)
