"""Issue 12 under chaos: 3 worker processes fire 20 smoke tests at once and no request meets
provisionOnDemand's 429 (5 calls per 10 s per tenant, shared limiter in Redis); a rotation of a
quarantined job survives ``kill -9`` of its worker mid-way."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.chaos.stack import (
    RECOVERY_S,
    SEED,
    Api,
    Records,
    env_for,
    kill9,
    processes,
    wait_for,
    worker_up,
)
from tests.helpers.sandbox import start_sandbox

pytestmark = pytest.mark.chaos

N = 20
USER = "9bb0f679-a883-4a6f-8260-35b491b8b8c8"
GOOD = "chaos-rotated-token-8e7d6c5b4a"
BAD = "sandbox:quarantine chaos-bad-token"


def creds(token: str) -> list[dict[str, str]]:
    return [
        {"key": "BaseAddress", "value": "https://scim.example.com/v2"},
        {"key": "SecretToken", "value": token},
    ]


async def test_twenty_smoke_tests_on_three_workers_never_see_the_429(
    tmp_path: Path, redis: Redis, redis_url: str
) -> None:
    seed = {**SEED, "generate": {"count": N, "templates": [{"id": "scim", "default": True}]}}
    sandbox = start_sandbox(tmp_path / "sandbox", seed=seed, faults={"activation_delay_ms": 100})
    try:
        queue = "chaos-smoke-limit"
        env = env_for(sandbox, redis_url, queue)
        with processes(tmp_path) as procs:
            base = procs.api(env)
            for i in range(3):
                procs.worker(env, f"smoke-{i}")
            for i in range(3):
                await worker_up(redis, queue, f"smoke-{i}")
            principals = [p["id"] for p in sandbox.principals()][:N]
            async with Api.new_session() as session:
                api = Api(session, base)
                began = time.monotonic()

                async def one(sp: str) -> dict[str, Any]:
                    body = {
                        "servicePrincipalId": sp,
                        "smokeTest": {"subjectId": USER, "objectTypeName": "User"},
                    }
                    status, record, _ = await api.call("POST", "/v1/provisioning-requests", body)
                    assert status == 202, record
                    return await api.terminal(record["id"], 180)

                done = await asyncio.gather(*(one(sp) for sp in principals))
                took = time.monotonic() - began
        states = [d["state"] for d in done]
        assert states == ["succeeded"] * N, [(d["error"], d["history"][-3:]) for d in done]
        assert all(d["smokeTestResult"]["succeeded"] for d in done)
        stats = sandbox._call("GET", "/_sandbox/lifecycle")
        calls = sandbox.stats()["calls"].get("jobs.provisionOnDemand", {})
        assert stats["onDemand"].get("429", 0) == 0, stats
        assert calls == {"200": N}, calls
        assert stats["onDemandMaxInWindow"] <= 5, stats
        print(
            f"\nSMOKE LIMIT: {N} smoke tests on 3 workers in {took:.1f}s, 0 x 429, "
            f"at most {stats['onDemandMaxInWindow']} calls in any 10 s"
        )
    finally:
        sandbox.stop()


async def test_rotation_of_a_quarantined_job_survives_sigkill(
    tmp_path: Path, redis: Redis, redis_url: str
) -> None:
    sandbox = start_sandbox(tmp_path / "sandbox", seed=SEED, faults={"activation_delay_ms": 3000})
    try:
        queue = "chaos-rotate-kill"
        env = env_for(sandbox, redis_url, queue)
        records = Records(redis, queue)
        sp = sandbox.principals()[0]["id"]
        with processes(tmp_path) as procs:
            base = procs.api(env)
            worker = procs.worker(env, "rotate-1")
            await worker_up(redis, queue, "rotate-1")
            async with Api.new_session() as session:
                api = Api(session, base)
                body = {"servicePrincipalId": sp, "credentials": creds(BAD)}
                _, first, _ = await api.call("POST", "/v1/provisioning-requests", body)
                await api.terminal(first["id"], 60)  # verify may end before the quarantine

                async def quarantined() -> bool:
                    jobs = sandbox.stats()["jobs"].get(sp, [])
                    return bool(jobs) and jobs[0]["statusCode"] == "Quarantine"

                await wait_for(quarantined, 30, interval_s=0.2)
                body = {
                    "servicePrincipalId": sp,
                    "action": "rotateCredentials",
                    "credentials": creds(GOOD),
                }
                _, rotation, _ = await api.call("POST", "/v1/provisioning-requests", body)

                async def saved() -> bool:
                    return await records.has_done(rotation["id"], "save_secrets")

                await wait_for(saved, 30)
                kill9(worker)  # within lift_quarantine / verify (activation takes 3 s)
                killed_at = time.monotonic()
                procs.worker(env, "rotate-2")
                done = await api.terminal(rotation["id"], RECOVERY_S + 60)
                took = time.monotonic() - killed_at
        assert done["state"] == "succeeded", (done["error"], done["history"])
        assert await redis.exists(records.store.keys.credentials(rotation["id"])) == 0
        restarts = sandbox._call("GET", "/_sandbox/lifecycle")["restarts"]
        assert restarts, "the quarantine was never lifted"
        assert {r["resetScope"] for r in restarts} == {"QuarantineState"}
        [job] = sandbox.stats()["jobs"][sp]
        assert job["statusCode"] in {"NotRun", "Active"}, job
        print(f"\nROTATE KILL: succeeded {took:.1f}s after the kill, {len(restarts)} restart(s)")
    finally:
        sandbox.stop()
