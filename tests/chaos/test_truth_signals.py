"""Issue 11 items 2, 4 and 6 through real processes (API, workers, sandbox, Redis).

- Verify reads every signal: a job the sandbox quarantines 2 s after start under ``Paused``
  (Graph's Get example) fails ``JobQuarantined``; failing cycles fail ``JobFailing``; a job
  quarantined only after the window succeeds, saying its first cycle is not finished yet; a
  job an admin pauses after verify saw it started fails ``JobNotStarted`` one settle window
  after the pause, not at the verify timeout.
- Permissions: a token without any sync permission fails requests ``GraphPermissionMissing``
  within seconds, the worker warns at start-up and ``worker --check`` says not ready; an
  ``OwnedBy`` token on a principal the app does not own (401 ``UnknownError``, empty message)
  ends with the ownership hint once the replication-lag budget is spent.
- Cancel during verify ends ``cancelled`` (the job stays started, the history says so); a
  cancel after the end is a 409 problem+json.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.chaos.stack import (
    Api,
    Records,
    calls,
    env_for,
    one_started_job,
    processes,
    wait_for,
)
from tests.helpers.processes import REPO_ROOT, cli
from tests.helpers.sandbox import SandboxProcess
from tests.helpers.tenant_admin import TenantAdmin

pytestmark = pytest.mark.chaos
BASE = "/v1/provisioning-requests"


def _principal(sandbox: SandboxProcess, **fields: Any) -> str:
    sp = str(uuid.uuid4())
    sandbox.add_principal({"id": sp, "templates": [{"id": "scim", "default": True}], **fields})
    return sp


def _started_at(body: dict[str, Any]) -> float:
    at = next(h["at"] for h in body["history"] if h["step"] == "start_job")
    return datetime.fromisoformat(at).timestamp()


def _ended_at(body: dict[str, Any]) -> float:
    return datetime.fromisoformat(body["history"][-1]["at"]).timestamp()


async def test_verify_reads_quarantine_and_says_not_finished_yet(
    tmp_path: Path, redis_url: str, sandboxes: Callable[..., SandboxProcess]
) -> None:
    # The first cycle never finishes within the test (10 min): only the injected signals show.
    sandbox = sandboxes("signals", activation_delay_ms=600_000)
    quarantined = _principal(sandbox, quarantineAfterS=2)
    late = _principal(sandbox, quarantineAfterS=120)
    env = env_for(
        sandbox,
        redis_url,
        "chaos-signals",
        PROVISIONER_VERIFY_SETTLE_S="6",
        PROVISIONER_VERIFY_TIMEOUT_S="30",
    )
    with processes(tmp_path) as procs:
        procs.worker(env, "signals-worker")
        async with Api.new_session() as session:
            api = Api(session, procs.api(env, name="signals-api"))
            ids = [await api.submit(sp) for sp in (quarantined, late)]
            q, ok = [await api.terminal(rid, timeout_s=60) for rid in ids]
    assert q["state"] == "failed", q
    assert q["error"]["code"] == "JobQuarantined"
    assert q["error"]["details"]["statusCode"] == "Paused"  # quarantined though code says Paused
    assert q["error"]["details"]["errorCode"] == "SalesforceInvalidCredentials"
    detect_s = _ended_at(q) - _started_at(q)
    assert 2 <= detect_s < 5, detect_s
    assert ok["state"] == "succeeded", ok
    assert "first cycle is not finished yet" in ok["history"][-1]["message"]
    window_s = _ended_at(ok) - _started_at(ok)
    assert 6 <= window_s < 10, window_s
    print(
        f"\nquarantine 2 s after start detected by verify {detect_s:.1f}s after start; "
        f"a job quarantined after the window: verify succeeded after {window_s:.1f}s"
    )


async def test_failing_cycles_fail_the_request(
    tmp_path: Path, redis_url: str, sandboxes: Callable[..., SandboxProcess]
) -> None:
    sandbox = sandboxes("failing", activation_delay_ms=500, cycle_s=1, fail_cycles=True)
    env = env_for(sandbox, redis_url, "chaos-failing", PROVISIONER_VERIFY_SETTLE_S="10")
    with processes(tmp_path) as procs:
        procs.worker(env, "failing-worker")
        async with Api.new_session() as session:
            api = Api(session, procs.api(env, name="failing-api"))
            body = await api.terminal(await api.submit(sandbox.principals()[0]["id"]), 40)
    assert body["state"] == "failed", body
    assert body["error"]["code"] == "JobFailing"
    assert body["error"]["details"]["lastExecutionState"] == "Failed"
    assert body["error"]["details"]["errorCode"] == "SandboxCycleFailed"
    assert body["error"]["details"]["countSuccessiveCompleteFailures"] >= 1
    detect_s = _ended_at(body) - _started_at(body)
    assert detect_s < 10, detect_s  # the first failed cycle ends 0.5 s after start, not the window
    print(f"\nfailing cycles: verify failed {detect_s:.1f}s after start")


async def test_a_job_paused_after_start_fails_without_waiting_for_the_timeout(
    tmp_path: Path, redis: Redis, redis_url: str, sandboxes: Callable[..., SandboxProcess]
) -> None:
    """An admin pauses the job (Graph's own pause call) once verify has read it started; its
    first cycle never finishes within the test. Verify fails ``JobNotStarted`` once the job has
    shown ``Paused`` for the settle window (6 s), not at the verify timeout (60 s)."""
    sandbox = sandboxes("paused", activation_delay_ms=600_000)
    queue = "chaos-paused"
    records = Records(redis, queue)
    env = env_for(
        sandbox,
        redis_url,
        queue,
        PROVISIONER_VERIFY_SETTLE_S="6",
        PROVISIONER_VERIFY_TIMEOUT_S="60",
    )
    sp = sandbox.principals()[0]["id"]
    with processes(tmp_path) as procs:
        procs.worker(env, "paused-worker")
        async with Api.new_session() as session:
            api = Api(session, procs.api(env, name="paused-api"))
            rid = await api.submit(sp)

            async def verify_read() -> bool:  # start_job needs no GET of a job it created
                return calls(sandbox, "jobs.get") >= 1

            await wait_for(verify_read, timeout_s=30)
            job_id = (await records.get(rid)).job_id
            assert job_id is not None
            await TenantAdmin(sandbox).pause(sp, job_id)
            paused = time.monotonic()
            body = await api.terminal(rid, timeout_s=60)
            fail_s = time.monotonic() - paused
    assert body["state"] == "failed", body
    assert body["error"]["code"] == "JobNotStarted"
    assert body["error"]["details"]["health"] == "paused"
    assert "paused or disabled after the start" in body["error"]["message"]
    assert 5 <= fail_s < 20, fail_s  # one settle window after the pause; the timeout is 60 s
    print(f"\njob paused after start: verify failed {fail_s:.1f}s after the pause")


def _check(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli("worker", "--check", *args),
        env={**env, "PATH": "/usr/bin:/bin"},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


async def test_missing_permissions_fail_fast_and_say_so(
    tmp_path: Path, redis: Redis, redis_url: str, sandboxes: Callable[..., SandboxProcess]
) -> None:
    stripped = sandboxes("stripped", token_roles=[])  # every token without any role
    owned_by = sandboxes("owned-by", token_roles=["Application.ReadWrite.OwnedBy"])
    env = env_for(stripped, redis_url, "chaos-perm")
    owned_env = env_for(owned_by, redis_url, "chaos-owned", PROVISIONER_CONSISTENCY_BUDGET_S="5")
    with processes(tmp_path) as procs:
        worker = procs.worker(env, "perm-worker")
        procs.worker(owned_env, "owned-worker")
        async with Api.new_session() as session:
            api = Api(session, procs.api(env, name="perm-api"))
            owned_api = Api(session, procs.api(owned_env, name="owned-api"))
            began = time.monotonic()
            rid = await api.submit(stripped.principals()[0]["id"])
            body = await api.terminal(rid, timeout_s=30)
            fail_s = time.monotonic() - began
            began = time.monotonic()
            not_owned = await owned_api.terminal(
                await owned_api.submit(owned_by.principals()[0]["id"]), timeout_s=60
            )
            owned_fail_s = time.monotonic() - began

            async def warned() -> bool:
                return "graph_permission_missing" in worker.log()

            await wait_for(warned, timeout_s=10)
            check_env = {**env, "PYTHONPATH": str(REPO_ROOT)}
            check = await asyncio.to_thread(_check, check_env)
            live = await asyncio.to_thread(_check, check_env, "--live")
    assert body["state"] == "failed"
    assert body["error"]["code"] == "GraphPermissionMissing"
    assert "Synchronization.ReadWrite.All" in body["error"]["message"]
    assert body["error"]["details"]["tokenRoles"] == []
    assert fail_s < 30
    assert check.returncode == 1, check.stdout + check.stderr
    assert "GraphPermissionMissing" in check.stdout
    assert live.returncode == 0, live.stdout + live.stderr  # alive: a restart would not help
    assert not_owned["state"] == "failed", not_owned
    assert not_owned["error"]["code"] == "GraphPermissionMissing"
    assert "owner of service principal" in not_owned["error"]["message"]
    assert not_owned["error"]["graphStatus"] == 401
    print(
        f"\nno sync permission: failed in {fail_s:.2f}s; OwnedBy on a principal not owned: "
        f"failed in {owned_fail_s:.1f}s (consistency budget 5 s)"
    )


async def test_cancel_during_verify_ends_cancelled_and_too_late_is_409(
    tmp_path: Path, redis: Redis, redis_url: str, sandboxes: Callable[..., SandboxProcess]
) -> None:
    sandbox = sandboxes("cancel-verify", activation_delay_ms=600_000)
    queue = "chaos-cancel-verify"
    records = Records(redis, queue)
    env = env_for(sandbox, redis_url, queue, PROVISIONER_VERIFY_SETTLE_S="60")
    sp = sandbox.principals()[0]["id"]
    with processes(tmp_path) as procs:
        procs.worker(env, "cancel-worker")
        async with Api.new_session() as session:
            api = Api(session, procs.api(env, name="cancel-api"))
            rid = await api.submit(sp)
            await wait_for(lambda: records.has_done(rid, "start_job"), timeout_s=30)
            status, accepted, _ = await api.call("POST", f"{BASE}/{rid}/cancel")
            assert status == 202, accepted
            began = time.monotonic()
            final = await api.terminal(rid, timeout_s=20)
            cancel_s = time.monotonic() - began
            late, problem, _ = await api.call("POST", f"{BASE}/{rid}/cancel")
            failed_id = (
                await api.call("POST", BASE, {"servicePrincipalId": sp, "templateId": "nope"})
            )[1]["id"]
            await api.terminal(failed_id, timeout_s=20)
            too_late, why, too_late_headers = await api.call("POST", f"{BASE}/{failed_id}/cancel")
    assert final["state"] == "cancelled", final
    assert "stays started in the tenant" in final["history"][-1]["message"]
    assert final["jobId"] == one_started_job(sandbox, sp)
    assert (late, problem["state"]) == (200, "cancelled")
    assert too_late == 409, why
    assert too_late_headers["Content-Type"].startswith("application/problem+json")
    assert "already failed" in why["detail"]
    print(f"\ncancel during verify: cancelled {cancel_s:.1f}s after the 202")
