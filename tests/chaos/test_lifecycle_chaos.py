"""Issue 12 under chaos: 3 worker processes fire 20 smoke tests at once and no request meets
provisionOnDemand's 429 (5 calls per 10 s per tenant, shared limiter in Redis); every action
that makes more than one Graph call survives ``kill -9`` of its worker mid-way (a rotation of a
quarantined job, a restart of one, a resume with a smoke test, a deprovision) without repeating
the Graph call of a step recorded before the kill."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.chaos.stack import (
    RECOVERY_S,
    SEED,
    Api,
    Records,
    arrived,
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


# -- SIGKILL in the middle of the other multi-call actions ------------------------------------
# Every Graph call takes 1 s once the action is submitted (latency_ms), so the kill lands while
# the worker waits for Graph; the kill waits for an event (a step recorded, a call arriving),
# never a sleep. The new worker must end the request right without repeating the Graph call of
# a step recorded as done before the kill.
LATENCY = {"latency_ms": 1000}


class KillStack:
    """A sandbox, the API and a first worker on one queue; a second worker after the kill."""

    def __init__(self, tmp_path: Path, redis: Redis, redis_url: str, name: str) -> None:
        self.tmp_path, self.redis, self.name = tmp_path, redis, name
        self.sandbox = start_sandbox(
            tmp_path / "sandbox", seed=SEED, faults={"activation_delay_ms": 100}
        )
        self.env = env_for(self.sandbox, redis_url, name)
        self.records = Records(redis, name)
        self.sp = self.sandbox.principals()[0]["id"]

    async def run(self, api: Api, body: dict[str, Any]) -> str:
        rid = await self.submit(api, body)
        done = await api.terminal(rid, 60)
        assert done["state"] == "succeeded", (done["error"], done["history"])
        return rid

    async def submit(self, api: Api, body: dict[str, Any]) -> str:
        status, record, _ = await api.call("POST", "/v1/provisioning-requests", body)
        assert status == 202, record
        return str(record["id"])

    def arrived(self, *routes: str) -> dict[str, int]:
        return {route: arrived(self.sandbox, route) for route in routes}

    def reached(self, route: str) -> Callable[[], Awaitable[bool]]:
        """A probe: a call of ``route`` reached the sandbox (answered or still in flight)."""

        async def probe() -> bool:
            return arrived(self.sandbox, route) >= 1

        return probe


def _steps(record: dict[str, Any]) -> dict[str, str]:
    return {h["step"]: h["outcome"] for h in record["history"] if h.get("step")}


async def test_restart_of_a_quarantined_job_survives_sigkill_during_verify(
    tmp_path: Path, redis: Redis, redis_url: str
) -> None:
    """find_job (list) -> restart_job (GET, POST restart) -> verify (GETs): killed once the
    restart is recorded, while verify's first GET is in flight. The restart is not sent again."""
    k = KillStack(tmp_path, redis, redis_url, "chaos-restart-kill")
    try:
        with processes(tmp_path) as procs:
            base = procs.api(k.env)
            worker = procs.worker(k.env, "restart-1")
            await worker_up(redis, k.name, "restart-1")
            async with Api.new_session() as session:
                api = Api(session, base)
                k.sandbox.patch_faults({"quarantine_after_s": 0.3})
                await api.terminal(await k.submit(api, {"servicePrincipalId": k.sp}), 60)

                async def quarantined() -> bool:
                    jobs = k.sandbox.stats()["jobs"].get(k.sp, [])
                    return bool(jobs) and bool(jobs[0]["quarantined"])

                await wait_for(quarantined, 30, interval_s=0.2)
                k.sandbox.patch_faults({"quarantine_after_s": None, **LATENCY})
                before = k.arrived("jobs.list", "jobs.restart")
                body = {
                    "servicePrincipalId": k.sp,
                    "action": "restart",
                    "resetScope": ["QuarantineState"],
                }
                rid = await k.submit(api, body)
                await wait_for(lambda: k.records.has_done(rid, "restart_job"), 30)
                kill9(worker)  # verify's GET takes 1 s: it is in flight or about to be sent
                assert not await k.records.has_done(rid, "verify")
                at_kill = k.arrived("jobs.list", "jobs.restart")
                procs.worker(k.env, "restart-2")
                done = await api.terminal(rid, RECOVERY_S + 60)
        assert done["state"] == "succeeded", (done["error"], done["history"])
        assert _steps(done)["verify"] == "succeeded"
        assert at_kill == {"jobs.list": before["jobs.list"] + 1, "jobs.restart": 1}, at_kill
        assert k.arrived("jobs.list", "jobs.restart") == at_kill  # neither step ran again
        restarts = k.sandbox._call("GET", "/_sandbox/lifecycle")["restarts"]
        assert [r["resetScope"] for r in restarts] == ["QuarantineState"]
        [job] = k.sandbox.stats()["jobs"][k.sp]
        assert not job["quarantined"], job
    finally:
        k.sandbox.stop()


async def test_resume_with_a_smoke_test_survives_sigkill_during_the_smoke_test(
    tmp_path: Path, redis: Redis, redis_url: str
) -> None:
    """find_job -> start_job (GET, POST start) -> verify -> smoke_test (GET schema, POST
    provisionOnDemand): killed while the schema GET is in flight. The job is started once."""
    k = KillStack(tmp_path, redis, redis_url, "chaos-resume-kill")
    try:
        with processes(tmp_path) as procs:
            base = procs.api(k.env)
            worker = procs.worker(k.env, "resume-1")
            await worker_up(redis, k.name, "resume-1")
            async with Api.new_session() as session:
                api = Api(session, base)
                await k.run(api, {"servicePrincipalId": k.sp})
                await k.run(api, {"servicePrincipalId": k.sp, "action": "pause"})
                k.sandbox.patch_faults(LATENCY)
                before = k.arrived("jobs.list", "jobs.start")
                body = {
                    "servicePrincipalId": k.sp,
                    "action": "resume",
                    "smokeTest": {"subjectId": USER, "objectTypeName": "User"},
                }
                rid = await k.submit(api, body)
                await wait_for(k.reached("schema.get"), 60)
                kill9(worker)
                done_at_kill = list(dict.fromkeys(await k.records.done_steps(rid)))
                assert done_at_kill == ["find_job", "start_job", "verify"], done_at_kill
                at_kill = k.arrived("jobs.list", "jobs.start", "jobs.provisionOnDemand")
                procs.worker(k.env, "resume-2")
                done = await api.terminal(rid, RECOVERY_S + 60)
        assert done["state"] == "succeeded", (done["error"], done["history"])
        assert done["smokeTestResult"]["succeeded"] is True
        assert at_kill == {
            "jobs.list": before["jobs.list"] + 1,
            "jobs.start": before["jobs.start"] + 1,
            "jobs.provisionOnDemand": 0,
        }, at_kill
        after = k.arrived("jobs.list", "jobs.start", "jobs.provisionOnDemand")
        assert after == {**at_kill, "jobs.provisionOnDemand": 1}, after
        verified = [h for h in done["history"] if h.get("step") == "verify"]
        assert [h["outcome"] for h in verified].count("succeeded") == 1, verified
        [job] = k.sandbox.stats()["jobs"][k.sp]
        assert job["scheduleState"] == "Active"
    finally:
        k.sandbox.stop()


async def test_deprovision_survives_sigkill_with_its_delete_in_flight(
    tmp_path: Path, redis: Redis, redis_url: str
) -> None:
    """find_job (list) -> delete_job (DELETE): killed while the DELETE is in flight. The new
    worker does not list again; its DELETE deletes the job or finds it gone (404)."""
    k = KillStack(tmp_path, redis, redis_url, "chaos-deprovision-kill")
    try:
        with processes(tmp_path) as procs:
            base = procs.api(k.env)
            worker = procs.worker(k.env, "deprovision-1")
            await worker_up(redis, k.name, "deprovision-1")
            async with Api.new_session() as session:
                api = Api(session, base)
                await k.run(api, {"servicePrincipalId": k.sp})
                [job] = k.sandbox.stats()["jobs"][k.sp]
                k.sandbox.patch_faults(LATENCY)
                lists = k.arrived("jobs.list")["jobs.list"]
                rid = await k.submit(api, {"servicePrincipalId": k.sp, "action": "deprovision"})
                await wait_for(k.reached("jobs.delete"), 30)
                kill9(worker)
                assert set(await k.records.done_steps(rid)) == {"find_job"}
                procs.worker(k.env, "deprovision-2")
                done = await api.terminal(rid, RECOVERY_S + 60)
                status, app, _ = await api.call("GET", f"/v1/applications/{k.sp}")
        assert done["state"] == "succeeded", (done["error"], done["history"])
        assert done["jobId"] == job["id"]
        assert _steps(done)["delete_job"] in {"succeeded", "adopted"}
        assert k.arrived("jobs.list")["jobs.list"] == lists + 1  # find_job ran once
        assert k.arrived("jobs.delete")["jobs.delete"] == 2  # the killed one, then the retry
        assert k.sandbox.stats()["jobs"].get(k.sp, []) == []
        assert status == 200
        assert app["jobs"] == [], app
    finally:
        k.sandbox.stop()
