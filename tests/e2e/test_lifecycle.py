"""Issue 12 end to end, as separate processes (Redis, the sandbox, the API, a worker): every
lifecycle action run twice in a row, the rotation that lifts a quarantine, the smoke test
passing and failing, each action again under injected 5xx/429, and what intake refuses."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from tests.chaos.stack import Api, Records, env_for, processes, wait_for, worker_up
from tests.helpers.sandbox import SandboxProcess, start_sandbox

pytestmark = pytest.mark.e2e

SEED = {
    "tenantId": "7c1f0a52-2f6a-4d33-9b1e-5a4c3d2e1f00",
    "applications": [
        {
            "clientId": "3d9e8f7a-6b5c-4d3e-2f1a-0b9c8d7e6f5a",
            "clientSecret": "lifecycle-client-secret-Qm8vT2xR5pLk",
            "roles": ["Synchronization.ReadWrite.All"],
        }
    ],
    "servicePrincipals": [],
    "generate": {"count": 6, "templates": [{"id": "scim", "default": True}]},
}
GOOD_TOKEN = "lifecycle-token-value-9f8e7d6c"
NEW_TOKEN = "lifecycle-new-token-value-1a2b3c"
BAD_TOKEN = "sandbox:quarantine lifecycle-bad-token"
USER = "9bb0f679-a883-4a6f-8260-35b491b8b8c8"
FAILING_USER = "1cc0f679-a883-4a6f-8260-35b491b8b8c9"
# A bound, not a sleep: every wait polls the record. Random 429s cut the adaptive tenant rate
# (to its 5 calls/s floor at worst), so a request under faults may take a minute or more.
TIMEOUT_S = 150
CREATE_SETTLE_S = 5


def creds(token: str) -> list[dict[str, str]]:
    return [
        {"key": "BaseAddress", "value": "https://scim.example.com/v2"},
        {"key": "SecretToken", "value": token},
    ]


@dataclass
class Stack:
    api: Api
    sandbox: SandboxProcess
    records: Records
    principals: list[str]

    async def run(self, body: dict[str, Any], *, expect: str = "succeeded") -> dict[str, Any]:
        status, record, headers = await self.api.call("POST", "/v1/provisioning-requests", body)
        assert status == 202, (status, record)
        assert headers["Location"].endswith(record["id"])
        done = await self.api.terminal(record["id"], TIMEOUT_S)
        assert done["state"] == expect, (done["error"], done["history"])
        return done

    def jobs(self, sp: str) -> list[dict[str, Any]]:
        return list(self.sandbox.stats()["jobs"].get(sp, []))

    def lifecycle(self) -> dict[str, Any]:
        result: dict[str, Any] = self.sandbox._call("GET", "/_sandbox/lifecycle")
        return result


def steps(record: dict[str, Any]) -> dict[str, str]:
    return {h["step"]: h["outcome"] for h in record["history"] if h.get("step")}


@pytest_asyncio.fixture
async def stack(tmp_path: Path, redis: Redis, redis_url: str) -> AsyncIterator[Stack]:
    sandbox = start_sandbox(tmp_path / "sandbox", seed=SEED, faults={"activation_delay_ms": 200})
    queue = f"lifecycle-{uuid.uuid4().hex[:8]}"
    # A create POST answered 5xx may have made the job: the workers list for up to
    # CREATE_SETTLE_S before they POST again (300 s by default, longer than TIMEOUT_S; the
    # injected 500/503 of the under-faults test hit jobs.create one run in four). The sandbox's
    # job list is consistent at once (no job_list_lag_s), so a few seconds say "not made".
    env = env_for(sandbox, redis_url, queue, PROVISIONER_CREATE_SETTLE_S=str(CREATE_SETTLE_S))
    try:
        with processes(tmp_path) as procs:
            base = procs.api(env)
            procs.worker(env, "lifecycle-1")
            await worker_up(redis, queue, "lifecycle-1")
            async with Api.new_session() as session:
                principals = [p["id"] for p in sandbox.principals()]
                yield Stack(Api(session, base), sandbox, Records(redis, queue), principals)
    finally:
        sandbox.stop()


async def test_every_action_twice_in_a_row(stack: Stack) -> None:
    sp = stack.principals[0]
    first = await stack.run({"servicePrincipalId": sp, "credentials": creds(GOOD_TOKEN)})
    assert first["action"] == "provision"
    [job] = stack.jobs(sp)
    for _ in range(2):
        done = await stack.run({"servicePrincipalId": sp, "action": "pause"})
        assert done["action"] == "pause"
        assert done["jobId"] == job["id"]
        assert list(steps(done)) == ["find_job", "pause_job"]
    assert stack.lifecycle()["pauses"] == {job["id"]: 1}  # the second one only read the job
    assert stack.jobs(sp)[0]["scheduleState"] == "Paused"

    for _ in range(2):
        done = await stack.run({"servicePrincipalId": sp, "action": "resume"})
        assert steps(done)["verify"] == "succeeded"
    assert stack.sandbox.stats()["starts"][job["id"]] == 2  # provision + the first resume

    body = {"servicePrincipalId": sp, "action": "restart", "resetScope": ["Watermark", "Escrows"]}
    for _ in range(2):
        done = await stack.run(body)
        assert done["resetScope"] == ["Watermark", "Escrows"]
    restarts = stack.lifecycle()["restarts"]
    assert [r["resetScope"] for r in restarts] == ["Watermark, Escrows"] * 2

    for _ in range(2):
        done = await stack.run(
            {
                "servicePrincipalId": sp,
                "action": "rotateCredentials",
                "credentials": creds(NEW_TOKEN),
            }
        )
        assert steps(done)["lift_quarantine"] == "skipped"
        assert "verify" not in steps(done)
    assert await stack.records.redis.exists(stack.records.store.keys.credentials(done["id"])) == 0

    gone = [await stack.run({"servicePrincipalId": sp, "action": "deprovision"}) for _ in range(2)]
    assert steps(gone[0]) == {"find_job": "succeeded", "delete_job": "succeeded"}
    assert steps(gone[1]) == {"find_job": "adopted", "delete_job": "skipped"}
    assert stack.jobs(sp) == []
    assert stack.lifecycle()["deletes"] == {job["id"]: 1}

    missing = await stack.run({"servicePrincipalId": sp, "action": "pause"}, expect="failed")
    assert missing["error"]["code"] == "JobNotFound"
    assert missing["error"]["graphRequestId"]


async def test_restart_resume_and_rotation_of_a_quarantined_job(stack: Stack) -> None:
    sp = stack.principals[1]
    bad = await stack.run(
        {"servicePrincipalId": sp, "credentials": creds(BAD_TOKEN)}, expect="failed"
    )
    assert bad["error"]["code"] == "JobQuarantined"
    # A restart and a resume are verified like a start: with the bad token still saved, the
    # job they (re)start goes back to quarantine and both end as the provisioning did.
    for body in (
        {"servicePrincipalId": sp, "action": "restart", "resetScope": ["QuarantineState"]},
        {"servicePrincipalId": sp, "action": "resume"},
    ):
        again = await stack.run(body, expect="failed")
        assert again["error"]["code"] == "JobQuarantined", (body, again["error"])
        assert steps(again)["verify"] == "failed"
    done = await stack.run(
        {"servicePrincipalId": sp, "action": "rotateCredentials", "credentials": creds(NEW_TOKEN)}
    )
    assert steps(done)["lift_quarantine"] == "succeeded"
    assert steps(done)["verify"] == "succeeded"
    assert stack.lifecycle()["restarts"][-1]["resetScope"] == "QuarantineState"
    assert stack.jobs(sp)[0]["statusCode"] == "Active"
    # ... and watched after it, like after a start: only the rotation succeeded.
    status, app, _ = await stack.api.call("GET", f"/v1/applications/{sp}")
    assert status == 200, app
    [job] = app["jobs"]
    assert (job["jobId"], job["watching"]) == (done["jobId"], True)
    assert app["requests"][0]["id"] == done["id"]


async def test_smoke_test_passes_and_fails(stack: Stack) -> None:
    sp = stack.principals[2]
    smoke = {"subjectId": USER, "objectTypeName": "User"}
    done = await stack.run({"servicePrincipalId": sp, "smokeTest": smoke})
    result = done["smokeTestResult"]
    assert result["succeeded"]
    assert result["result"] == "Success"
    assert [s["name"] for s in result["steps"]][-1] == "EntryExportAdd"
    line = next(h for h in done["history"] if h["step"] == "smoke_test")
    assert "EntryExportAdd Success" in line["message"]
    assert line["graphRequestId"]

    stack.sandbox._call(
        "PUT", "/_sandbox/on-demand", {"failSubjects": {FAILING_USER: "the SCIM endpoint said 409"}}
    )
    failing = {"subjectId": FAILING_USER, "objectTypeName": "User"}
    failed = await stack.run(
        {"servicePrincipalId": sp, "action": "restart", "smokeTest": failing}, expect="failed"
    )
    assert failed["error"]["code"] == "SmokeTestFailed"
    assert "the SCIM endpoint said 409" in failed["error"]["message"]
    assert failed["smokeTestResult"]["succeeded"] is False
    group = await stack.run(
        {
            "servicePrincipalId": sp,
            "action": "resume",
            "smokeTest": {"subjectId": USER, "objectTypeName": "Group"},
        }
    )
    assert group["smokeTestResult"]["ruleId"] == "scim"


async def test_each_action_under_faults(stack: Stack) -> None:
    sp = stack.principals[3]
    stack.sandbox.patch_faults(
        {"errors": {"*": {"503": 0.15, "500": 0.1, "429": 0.1}}, "retry_after_s": 0.2}
    )
    await stack.run({"servicePrincipalId": sp, "credentials": creds(GOOD_TOKEN)})
    await stack.run({"servicePrincipalId": sp, "action": "pause"})
    await stack.run({"servicePrincipalId": sp, "action": "resume"})
    await stack.run(
        {
            "servicePrincipalId": sp,
            "action": "restart",
            "resetScope": ["QuarantineState"],
            "smokeTest": {"subjectId": USER, "objectTypeName": "User"},
        }
    )
    await stack.run(
        {"servicePrincipalId": sp, "action": "rotateCredentials", "credentials": creds(NEW_TOKEN)}
    )
    await stack.run({"servicePrincipalId": sp, "action": "deprovision"})
    assert stack.jobs(sp) == []
    faults = stack.sandbox.stats()["faults"]
    assert sum(faults.get(s, 0) for s in ("500", "503", "429")) > 0, faults


async def test_a_create_answered_500_waits_a_bounded_settle_then_creates(stack: Stack) -> None:
    """The under-faults test's old "hang": a create POST answered 5xx may have made the job, so
    the workers list for up to CREATE_SETTLE_S before they POST again. The wait is bounded, and
    the record says until when while it waits."""
    sp = stack.principals[5]
    stack.sandbox.patch_faults({"errors": {"jobs.create": {"500": 1.0}}})
    status, record, _ = await stack.api.call(
        "POST", "/v1/provisioning-requests", {"servicePrincipalId": sp}
    )
    assert status == 202, record

    async def settling() -> str | None:
        body = await stack.api.get(record["id"])
        lines = [h.get("message") or "" for h in body["history"] if h.get("step") == "create_job"]
        return next((m for m in lines if "listing again until" in m), None)

    line = await wait_for(settling, 30)
    assert "PROVISIONER_CREATE_SETTLE_S 5s" in line, line
    stack.sandbox.patch_faults({"errors": {"jobs.create": None}})
    began = time.monotonic()
    done = await stack.api.terminal(record["id"], CREATE_SETTLE_S + 60)
    assert done["state"] == "succeeded", (done["error"], done["history"])
    assert time.monotonic() - began < CREATE_SETTLE_S + 30
    assert stack.sandbox.stats()["calls"]["jobs.create"] == {"500": 1, "201": 1}
    assert len(stack.jobs(sp)) == 1


REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"action": "restart", "resetScope": ["None"]}, "resetScope[0]"),  # Graph: "DO NOT USE"
    ({"action": "restart", "resetScope": ["ConnectorDataStore"]}, "resetScope[0]"),
    ({"action": "restart", "resetScope": ["Watermark", "Watermark"]}, "resetScope"),
    ({"action": "pause", "resetScope": ["Watermark"]}, "resetScope"),
    ({"action": "rotateCredentials"}, "credentials"),
    ({"action": "pause", "credentials": creds(GOOD_TOKEN)}, "credentials"),
    ({"action": "deprovision", "smokeTest": {"subjectId": USER, "objectTypeName": "User"}},
     "smokeTest"),
    ({"action": "pause", "scope": "all"}, "action"),
    ({"action": "stop"}, "action"),
    ({"action": "restart", "start": False}, "start"),  # verify would be skipped
    ({"action": "resume", "start": False}, "start"),
    ({"smokeTest": {"subjectId": USER, "objectTypeName": "Device"}}, "smokeTest.objectTypeName"),
]  # fmt: skip


async def test_intake_refuses_what_an_action_cannot_take(stack: Stack) -> None:
    for body, field in REFUSED:
        status, problem, _ = await stack.api.call(
            "POST", "/v1/provisioning-requests", {"servicePrincipalId": stack.principals[4], **body}
        )
        assert status == 422, (body, problem)
        assert field in [e["field"] for e in problem["errors"]], (body, problem)
    no_sp = {"action": "pause"}
    status, problem, _ = await stack.api.call("POST", "/v1/provisioning-requests", no_sp)
    assert status == 422
    assert "servicePrincipalId" in [e["field"] for e in problem["errors"]]
