"""End to end, as separate processes: Redis, the sandbox, the API and two workers.

50 requests for 50 principals with the sandbox at 10% random 429 (mixed Retry-After styles),
5% 5xx, 10% lost create responses, 500 ms replication lag and two-page template lists: every
request must succeed with exactly one job per principal, started exactly once.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.helpers.stack import Stack, e2e_stack, submit, wait_terminal

pytestmark = pytest.mark.e2e

API_KEY = "pk_e2e-test-key-0123456789abcdef"
N = 50
SEED = {
    "tenantId": "7c1f0a52-2f6a-4d33-9b1e-5a4c3d2e1f00",
    "applications": [
        {
            "clientId": "3d9e8f7a-6b5c-4d3e-2f1a-0b9c8d7e6f5a",
            "clientSecret": "e2e-client-secret-Qm8vT2xR5pLk",
            "roles": ["Synchronization.ReadWrite.All"],
        }
    ],
    "servicePrincipals": [],
    "generate": {
        "count": N,
        "templates": [{"id": "scim", "default": False}, {"id": "scimV2", "default": True}],
    },
}
FAULTS = {
    "errors": {"*": {"429": 0.10, "500": 0.0125, "502": 0.0125, "503": 0.0125, "504": 0.0125}},
    "retry_after_style": "mixed",
    "retry_after_s": 1.0,
    "lost_create_rate": 0.10,
    "replication_lag_ms": 500,
    "page_size": 1,
    "activation_delay_ms": 300,
}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    # A 5xx on create that made nothing waits out the settle budget (default 5 min).
    with e2e_stack(
        tmp_path,
        api_key=API_KEY,
        queue="e2e",
        seed=SEED,
        faults=FAULTS,
        PROVISIONER_CREATE_SETTLE_S="10",
    ) as running:
        yield running


async def test_fifty_requests_under_faults_each_get_one_started_job(stack: Stack) -> None:
    principals = [p["id"] for p in stack.sandbox.principals()]
    assert len(principals) == N
    headers = {"Authorization": f"Bearer {API_KEY}"}
    began = time.monotonic()
    async with aiohttp.ClientSession(headers=headers) as session:
        ids = await asyncio.gather(
            *(submit(session, stack.base, {"servicePrincipalId": sp}) for sp in principals)
        )
        # Only against a hang (it took 136 s beside a CPU and I/O hog), below pytest's
        # 300 s so that a miss says how many requests did not finish.
        done = await wait_terminal(session, stack.base, list(ids), timeout_s=250)
    elapsed = time.monotonic() - began
    failed = {rid: r["error"] for rid, r in done.items() if r["state"] != "succeeded"}
    assert len(done) == N, f"{N - len(done)} requests did not finish"
    assert not failed

    stats = stack.sandbox.stats()
    for sp in principals:
        jobs = stats["jobs"].get(sp, [])
        assert len(jobs) == 1, (sp, jobs)
        assert stats["starts"][jobs[0]["id"]] == 1, (sp, jobs)
    by_record = {r["servicePrincipalId"]: r["jobId"] for r in done.values()}
    assert by_record == {sp: stats["jobs"][sp][0]["id"] for sp in principals}

    calls = stats["total_calls"]
    throttled = sum(route.get("429", 0) for route in stats["calls"].values())
    summary = {
        "requests": N,
        "elapsed_s": round(elapsed, 1),
        "graph_calls": calls,
        "throttled_429": throttled,
        "faults": stats["faults"],
    }
    print("\nE2E SUMMARY " + json.dumps(summary))
    for worker in stack.workers:
        assert worker.alive(), worker.log()[-2000:]
