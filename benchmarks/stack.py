"""The processes of one benchmark run: Redis, the sandbox, the API and N workers, on loopback.

Built on the test helpers (``tests/helpers``: one piece of code per idea). A :class:`Stack` is a
context manager; :meth:`Stack.submit` posts requests through the real intake API and
:meth:`Stack.wait_finished` follows the workers' own ``/metrics`` counters until every request
reached a terminal state, so nothing polls the records while the run is being measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.report import state_dir
from service.core.config_values import hash_api_key
from tests.helpers.processes import Child, start_api, start_worker
from tests.helpers.redis_server import RedisServer
from tests.helpers.sandbox import SandboxProcess, start_sandbox

REPO = Path(__file__).resolve().parents[1]
API_KEY = "pk_bench-key-0123456789abcdef0123"
TENANT = "2b7d3c41-5e6f-4a80-9b1c-2d3e4f5a6b7c"

#: Worker settings that keep a run short without changing what is measured.
FAST_ENV = {
    "PROVISIONER_LOG_LEVEL": "WARNING",
    "PROVISIONER_LOG_FORMAT": "json",
    "PROVISIONER_VERIFY_SETTLE_S": "0.5",
    "PROVISIONER_VERIFY_POLL_S": "0.2",
    "PROVISIONER_CREATE_SETTLE_S": "1",
    "PROVISIONER_BACKOFF_BASE_S": "0.2",
    "PROVISIONER_BACKOFF_CAP_S": "5",
    "PROVISIONER_RECONCILE_INTERVAL_S": "30",
}


def seed(count: int, templates: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A tenant with ``count`` generated principals (one default template each)."""
    return {
        "tenantId": TENANT,
        "applications": [
            {
                "clientId": "6a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
                "clientSecret": "bench-client-secret-Zq81mP",
                "roles": ["Synchronization.ReadWrite.All"],
            }
        ],
        "servicePrincipals": [],
        "generate": {"count": count, "templates": templates or [{"id": "scim", "default": True}]},
    }


@dataclass
class Outcome:
    """What one run did, from the workers' metrics and the sandbox's stats."""

    requests: int
    wall_s: float
    finished: dict[str, float]  # by terminal state
    stats: dict[str, Any]
    principals: list[str] = field(default_factory=list)

    @property
    def graph_calls(self) -> int:
        """Graph calls (the token endpoint excluded)."""
        return sum(
            sum(by_status.values())
            for route, by_status in self.stats["calls"].items()
            if route != "token"
        )

    @property
    def throttled(self) -> int:
        return sum(
            by_status.get("429", 0)
            for route, by_status in self.stats["calls"].items()
            if route != "token"
        )

    @property
    def duplicates(self) -> int:
        """Extra jobs (more than one per principal) plus extra starts (more than one per job)."""
        jobs = self.stats["jobs"]
        extra_jobs = sum(max(0, len(jobs.get(sp, [])) - 1) for sp in self.principals)
        extra_starts = sum(max(0, n - 1) for n in self.stats["starts"].values())
        return extra_jobs + extra_starts

    @property
    def succeeded(self) -> int:
        return int(self.finished.get("succeeded", 0))

    @property
    def failed(self) -> int:
        return int(sum(v for k, v in self.finished.items() if k != "succeeded"))

    @property
    def throttled_ratio(self) -> float:
        return self.throttled / self.graph_calls if self.graph_calls else 0.0

    def row(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "wall_s": round(self.wall_s, 1),
            "graph_calls": self.graph_calls,
            "calls_429": self.throttled,
            "ratio_429": f"{100 * self.throttled_ratio:.2f}%",
            "succeeded": self.succeeded,
            "failed": self.failed,
            "duplicates": self.duplicates,
        }


def metrics_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return str(resp.read().decode())


def finished_by_state(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("provisioner_requests_finished_total{"):
            labels, value = line.rsplit(" ", 1)
            state = labels.split('state="', 1)[1].split('"', 1)[0]
            out[state] = out.get(state, 0.0) + float(value)
    return out


class Stack:
    """Redis + sandbox + API + workers for one run (``with Stack(...) as s:``)."""

    def __init__(
        self,
        *,
        principals: int,
        faults: dict[str, Any] | None = None,
        workers: int = 1,
        env: dict[str, str] | None = None,
        redis_config: Path | None = None,
        redis_args: tuple[str, ...] = (),
        api: bool = True,
        workdir: Path | None = None,
    ) -> None:
        # In the repository's .state/, not the system temp dir (a killed run leaves it there).
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="bench-", dir=state_dir())
        self.dir = workdir or Path(self._tmp.name)  # type: ignore[union-attr]
        self.n_principals = principals
        self.faults = faults or {}
        self.n_workers = workers
        self.extra_env = env or {}
        self.redis_config = redis_config
        self.redis_args = redis_args
        self.with_api = api
        self.redis: RedisServer | None = None
        self.sandbox: SandboxProcess | None = None
        self.api: Child | None = None
        self.base = ""
        self.workers: list[Child] = []
        self.env: dict[str, str] = {}

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.redis = RedisServer(
            self.dir / "redis", config_file=self.redis_config, extra_args=self.redis_args
        )
        self.redis.start()
        self.sandbox = start_sandbox(
            self.dir / "sandbox", seed=seed(self.n_principals), faults=self.faults
        )
        self.env = {
            **self.sandbox.env(),
            **FAST_ENV,
            "PROVISIONER_REDIS_URL": self.redis.url,
            "PROVISIONER_API_KEYS": f"bench:{hash_api_key(API_KEY)}",
            **self.extra_env,
        }
        # Workers first: they start while start_api waits for the API to answer.
        self.workers = [self.add_worker(i) for i in range(self.n_workers)]
        if self.with_api:
            self.api, self.base = start_api(self.env, self.dir)
        self.wait_workers_ready()

    def wait_workers_ready(self, timeout_s: float = 30) -> None:
        """Until every worker wrote its arq health key (it is then polling the queue)."""
        import redis as redis_sync

        assert self.redis is not None
        client = redis_sync.Redis.from_url(self.redis.url)
        queue = self.env.get("PROVISIONER_QUEUE_NAME", "provisioner:queue")
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                names = [w.name.replace("worker-", "bench-") for w in self.workers]
                if all(client.exists(f"{queue}:health-check:{n}") for n in names):
                    return
                for w in self.workers:
                    if not w.alive():
                        raise RuntimeError(f"{w.name} died: {w.log()[-3000:]}")
                time.sleep(0.1)
            raise RuntimeError("workers not ready")
        finally:
            client.close()

    def add_worker(self, i: int, env: dict[str, str] | None = None) -> Child:
        extra = {"PROVISIONER_WORKER_NAME": f"bench-{i}", **(env or {})}
        return start_worker({**self.env, **extra}, self.dir, name=f"worker-{i}")

    def stop(self) -> None:
        children = [*self.workers, *([self.api] if self.api else [])]
        for child in children:  # all at once: they shut down side by side
            child.signal(signal.SIGTERM)
        for child in children:
            with contextlib.suppress(Exception):
                child.stop(signalled=True)
        if self.sandbox is not None:
            self.sandbox.stop()
        if self.redis is not None:
            self.redis.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    # -- driving a run --------------------------------------------------------------------
    def principal_ids(self) -> list[str]:
        assert self.sandbox is not None
        return [p["id"] for p in self.sandbox.principals()]

    async def submit(self, principals: list[str], concurrency: int = 16) -> list[str]:
        """POST one request per principal through the API; returns the request ids."""
        sem = asyncio.Semaphore(concurrency)
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with aiohttp.ClientSession(headers=headers) as session:

            async def one(sp: str) -> str:
                async with (
                    sem,
                    session.post(
                        f"{self.base}/v1/provisioning-requests", json={"servicePrincipalId": sp}
                    ) as resp,
                ):
                    body = await resp.json()
                    if resp.status != 202:
                        raise RuntimeError(f"intake answered {resp.status}: {body}")
                    return str(body["id"])

            return list(await asyncio.gather(*(one(sp) for sp in principals)))

    def finished(self) -> dict[str, float]:
        total: dict[str, float] = {}
        for w in self.workers:
            if not w.alive():
                continue
            with contextlib.suppress(OSError):
                for state, n in finished_by_state(metrics_text(w.metrics_port)).items():
                    total[state] = total.get(state, 0.0) + n
        return total

    async def wait_finished(
        self,
        n: int,
        timeout_s: float,
        on_tick: Callable[[float, dict[str, float]], None] | None = None,
        tick_s: float = 0.5,
    ) -> dict[str, float]:
        deadline = time.monotonic() + timeout_s
        done: dict[str, float] = {}
        last_tick = 0.0
        while time.monotonic() < deadline:
            done = await asyncio.to_thread(self.finished)
            now, left = time.monotonic(), n - sum(done.values())
            if on_tick is not None and (now - last_tick >= tick_s or left <= 0):
                on_tick(now, done)
                last_tick = now
            if left <= 0:
                break
            for w in self.workers:
                if not w.alive():
                    raise RuntimeError(f"{w.name} died: {w.log()[-3000:]}")
            # The last requests are awaited closely: a run's wall time ends within 50 ms of
            # its last request, not up to a whole tick later; scrapes stay rare before that.
            await asyncio.sleep(tick_s if left > max(2, 0.02 * n) else min(tick_s, 0.05))
        return done

    async def run(
        self, principals: list[str] | None = None, timeout_s: float = 600, **wait: Any
    ) -> Outcome:
        """Submit one request per principal, wait for all of them, collect the outcome."""
        assert self.sandbox is not None
        sps = principals if principals is not None else self.principal_ids()
        began = time.monotonic()
        await self.submit(sps)
        finished = await self.wait_finished(len(sps), timeout_s, **wait)
        wall = time.monotonic() - began
        return Outcome(len(sps), wall, finished, self.sandbox.stats(), sps)
