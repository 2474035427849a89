"""Issue 4, item 7, end to end: ``POST .../cancel`` stops a running request at its next step
boundary (no Graph call of a later step is made), ``POST .../retry`` re-drives a failed one from
its last completed step; both can be repeated safely. The two scenarios run at once, each on
its own sandbox, API and worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.chaos.stack import (
    Api,
    Processes,
    Records,
    calls,
    env_for,
    one_started_job,
    processes,
    wait_for,
)
from tests.helpers.sandbox import SandboxProcess

pytestmark = pytest.mark.chaos
BASE = "/v1/provisioning-requests"


async def _cancel_running(
    procs: Processes, sandbox: SandboxProcess, records: Records, env: dict[str, str]
) -> None:
    sp = sandbox.principals()[0]["id"]
    async with Api.new_session() as session:
        api = Api(session, procs.api(env, name="api-cancel"))
        procs.worker(env, "worker-cancel")
        rid = await api.submit(sp)
        # Mid-workflow: the template is resolved, create_job is running (1 s per Graph call).
        await wait_for(lambda: records.has_done(rid, "resolve_template"), timeout_s=20)
        first, body, _ = await api.call("POST", f"{BASE}/{rid}/cancel")
        again, body_again, _ = await api.call("POST", f"{BASE}/{rid}/cancel")
        assert (first, again) == (202, 202), (body, body_again)
        assert body["id"] == body_again["id"] == rid
        final = await api.terminal(rid, timeout_s=20)
        after, body_after, _ = await api.call("POST", f"{BASE}/{rid}/cancel")
    assert final["state"] == "cancelled", final
    assert (after, body_after["state"]) == (200, "cancelled")
    assert final["history"][-1]["outcome"] == "cancelled"
    assert "start_job" not in {h["step"] for h in final["history"]}
    assert calls(sandbox, "jobs.start") == 0  # nothing of a later step ran after the cancel


async def _retry_failed(
    procs: Processes, sandbox: SandboxProcess, records: Records, env: dict[str, str]
) -> None:
    sp = sandbox.principals()[0]["id"]
    async with Api.new_session() as session:
        api = Api(session, procs.api(env, name="api-retry"))
        procs.worker(env, "worker-retry")
        rid = await api.submit(sp)
        failed = await api.terminal(rid, timeout_s=30)
        assert failed["state"] == "failed", failed
        assert failed["error"]["code"] == "RetryBudgetExhausted"
        assert failed["step"] == "start_job"
        before = {r: calls(sandbox, r) for r in ("templates.list", "jobs.list", "jobs.create")}

        sandbox.patch_faults({"errors": {"jobs.start": None}})  # the outage is over
        first, body, _ = await api.call("POST", f"{BASE}/{rid}/retry")
        again, body_again, _ = await api.call("POST", f"{BASE}/{rid}/retry")
        assert first == 202, body
        assert again in {200, 202}, body_again
        assert body_again["id"] == rid
        done = await api.terminal(rid, timeout_s=30)
    assert done["state"] == "succeeded", done
    assert done["jobId"] == one_started_job(sandbox, sp)
    # Resumed at start_job: the earlier steps' Graph calls were not made again ...
    assert {r: calls(sandbox, r) for r in before} == before == dict.fromkeys(before, 1)
    # ... and each earlier step completed once, in the first run.
    completed = [h["step"] for h in done["history"] if h["outcome"] in {"succeeded", "skipped"}]
    assert completed.count("resolve_template") == completed.count("create_job") == 1
    assert [h["outcome"] for h in done["history"]].count("requeued") == 1


async def test_cancel_running_and_retry_failed(
    tmp_path: Path, redis_url: str, redis: Redis, sandboxes: Callable[..., SandboxProcess]
) -> None:
    slow = sandboxes("slow", latency_ms=1000)
    broken = sandboxes("broken", errors={"jobs.start": {"503": 1.0}})
    cancel_env = env_for(slow, redis_url, "chaos-cancel")
    retry_env = env_for(broken, redis_url, "chaos-retry", PROVISIONER_RETRY_BUDGET_S="4")
    with processes(tmp_path) as procs:
        await asyncio.gather(
            _cancel_running(procs, slow, Records(redis, "chaos-cancel"), cancel_env),
            _retry_failed(procs, broken, Records(redis, "chaos-retry"), retry_env),
        )
