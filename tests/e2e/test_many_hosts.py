"""Workers on separate machines share one queue and one tenant throttle through Redis.

Two worker processes with different names (as on two hosts) and one API, on one Redis. First
with a configured ceiling: the sandbox allows 25 calls per second; each worker alone would be
allowed 20, so only a rate that is really shared keeps the pair under the sandbox's limit. Then
with default settings (no rate configured): the workers find the sandbox's limit themselves.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from service.core.config_values import hash_api_key
from service.core.keys import Keys
from tests.helpers.processes import start_api, start_worker
from tests.helpers.redis_server import RedisServer
from tests.helpers.sandbox import start_sandbox

pytestmark = pytest.mark.e2e
KEY = "pk_many-hosts-key-0123456789abcdef"
N = 24


def _finished(metrics_port: int) -> float:
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("provisioner_requests_finished_total{")
    )


async def test_two_named_workers_share_queue_and_throttle(tmp_path: Path) -> None:
    env = {
        "PROVISIONER_TENANT_RATE_LIMIT": "20",
        "PROVISIONER_TENANT_RATE_BURST": "5",
        "PROVISIONER_WORKER_CONCURRENCY": "6",
    }
    await _run_two_hosts(tmp_path, N, 25, env)


async def test_default_settings_find_the_tenant_limit(tmp_path: Path) -> None:
    """No rate configured: the adaptive rate converges below R with < 2% of calls 429."""
    rates = await _run_two_hosts(tmp_path, 80, 30, {"PROVISIONER_WORKER_CONCURRENCY": "25"})
    late = rates[len(rates) // 2 :]  # the second half of the run, past the slow start
    assert late, rates
    assert max(late) <= 30, rates
    assert sum(late) / len(late) >= 0.7 * 30, rates


async def _run_two_hosts(tmp_path: Path, n: int, limit: int, extra: dict[str, str]) -> list[float]:
    """Provision ``n`` principals through two worker processes against a sandbox limiting the
    tenant to ``limit`` calls/s; returns the shared rate sampled while they ran."""
    seed: dict[str, Any] = {
        "tenantId": "1e0b8a52-2f6a-4d33-9b1e-5a4c3d2e1f99",
        "applications": [
            {
                "clientId": "4d9e8f7a-6b5c-4d3e-2f1a-0b9c8d7e6f5b",
                "clientSecret": "many-hosts-secret-Xy7",
                "roles": ["Synchronization.ReadWrite.All"],
            }
        ],
        "servicePrincipals": [],
        "generate": {"count": n, "templates": [{"id": "scim", "default": True}]},
    }
    sandbox = await asyncio.to_thread(
        start_sandbox,
        tmp_path / "sandbox",
        seed=seed,
        faults={"rate_limit": limit, "rate_window_s": 1.0, "activation_delay_ms": 100},
    )
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    env = {
        **sandbox.env(),
        "PROVISIONER_REDIS_URL": redis.url,
        "PROVISIONER_API_KEYS": f"hosts:{hash_api_key(KEY)}",
        "PROVISIONER_VERIFY_SETTLE_S": "0.5",
        "PROVISIONER_VERIFY_POLL_S": "0.2",
        **extra,
    }
    api, base = await asyncio.to_thread(start_api, env, tmp_path)
    workers = [
        start_worker({**env, "PROVISIONER_WORKER_NAME": f"host-{name}"}, tmp_path, f"worker-{name}")
        for name in ("a", "b")
    ]
    try:
        principals = [p["id"] for p in sandbox.principals()]
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as session:
            ids = []
            for sp in principals:
                async with session.post(
                    f"{base}/v1/provisioning-requests", json={"servicePrincipalId": sp}
                ) as resp:
                    assert resp.status == 202
                    ids.append((await resp.json())["id"])
            deadline = time.monotonic() + 120
            states: dict[str, str] = {}
            rates: list[float] = []
            shared = Redis.from_url(redis.url)
            key = Keys("provisioner:queue").tenant_bucket(sandbox.tenant_id)
            while time.monotonic() < deadline and len(states) < n:
                rate = await shared.hget(key, "cur")
                if rate is not None:
                    rates.append(float(rate))
                for rid in ids:
                    if rid in states:
                        continue
                    async with session.get(f"{base}/v1/provisioning-requests/{rid}") as resp:
                        record = await resp.json()
                    if record["state"] in {"succeeded", "failed"}:
                        states[rid] = record["state"]
                await asyncio.sleep(0.5)
            await shared.aclose()
        assert list(states.values()) == ["succeeded"] * n
        per_worker = [await asyncio.to_thread(_finished, w.metrics_port) for w in workers]
        assert sum(per_worker) == n
        assert all(n > 0 for n in per_worker), per_worker  # both hosts took work
        stats = sandbox.stats()
        throttled = stats["faults"].get("rate_limited", 0)
        assert throttled <= 0.02 * stats["total_calls"], (throttled, stats["total_calls"])
        assert all(len(stats["jobs"][sp]) == 1 for sp in principals)
        assert rates
        alive = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"{base}/metrics", timeout=5).read().decode()  # noqa: S310
        )
        assert "provisioner_workers_alive 2.0" in alive
        return rates
    finally:
        for child in [*workers, api]:
            child.stop()
        sandbox.stop()
        redis.stop()
