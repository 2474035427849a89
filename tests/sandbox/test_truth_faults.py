"""The sandbox faults that make a job's truth hard to tell (issue 11): a lagging job list, a 5xx
sent after the job was made, quarantine N seconds after start under ``Paused`` (Graph's own Get
example), failing cycles, cycles that advance over time, tokens without the sync permissions
and principals an ``OwnedBy`` app does not own (401 ``UnknownError``, empty message)."""

from __future__ import annotations

import base64
import json
from typing import Any

from sandbox.models import CycleRules
from sandbox.seed import load_seed
from sandbox.state import TenantState
from tests.helpers.harness import GITHUB, OWNED_BY_CLIENT, SALESFORCE, SCIM
from tests.helpers.sandbox import Clock, InProcessSandbox, graph_call


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


def test_the_job_list_lags_creates() -> None:
    clock = Clock()
    state = TenantState(load_seed(), clock=clock)
    job = state.create_job(SALESFORCE, "salesforce", initial_status="NotConfigured")
    assert state.list_jobs(SALESFORCE, lag_s=30) == []
    clock.t += 29.9
    assert state.list_jobs(SALESFORCE, lag_s=30) == []
    clock.t += 0.1
    assert [j["id"] for j in state.list_jobs(SALESFORCE, lag_s=30)] == [job.id]
    assert state.job(SALESFORCE, job.id).id == job.id  # GET by id is not the list


def test_quarantine_after_start_looks_like_graphs_get_example() -> None:
    clock = Clock()
    state = TenantState(load_seed(), clock=clock)
    job = state.create_job(SALESFORCE, "salesforce", initial_status="NotConfigured")
    rules = CycleRules(first_cycle_s=1, cycle_s=10, quarantine_after_s=120)
    state.start_job(SALESFORCE, job.id, rules=rules)
    clock.t += 119
    body = state.job(SALESFORCE, job.id).to_json()
    assert body["status"]["quarantine"] is None
    assert body["status"]["lastExecution"]["state"] == "Succeeded"  # cycles ran meanwhile
    clock.t += 1
    body = state.job(SALESFORCE, job.id).to_json()
    assert body["status"]["code"] == "Paused"
    assert body["schedule"]["state"] == "Active"
    assert body["status"]["quarantine"] == {
        "currentBegan": "",
        "nextAttempt": "",
        "reason": "",
        "seriesBegan": "",
        "seriesCount": 2,
        "error": {
            "code": "SalesforceInvalidCredentials",
            "message": "Your Salesforce.com credentials are invalid.  Please obtain a current "
            "Salesforce.com administrative user name, password and security token, and enter "
            "those in the screen for configuring user provisioning",
            "tenantActionable": True,
        },
    }
    state.start_job(SALESFORCE, job.id, rules=CycleRules(first_cycle_s=1))  # start clears it
    assert state.job(SALESFORCE, job.id).quarantine is None


def test_cycles_advance_and_fail_in_a_row() -> None:
    clock = Clock()
    state = TenantState(load_seed(), clock=clock)
    good = state.create_job(SALESFORCE, "salesforce", initial_status="NotConfigured")
    bad = state.create_job(SCIM, "scimV2", initial_status="NotConfigured")
    state.start_job(SALESFORCE, good.id, rules=CycleRules(first_cycle_s=2, cycle_s=5))
    state.start_job(SCIM, bad.id, rules=CycleRules(first_cycle_s=2, cycle_s=5, fail_cycles=True))
    first = state.job(SALESFORCE, good.id).to_json()["status"]["lastExecution"]
    assert first["timeBegan"].startswith("0001")  # Graph's placeholder right after start
    clock.t += 2
    one = state.job(SALESFORCE, good.id).to_json()["status"]["lastExecution"]
    assert one["state"] == "Succeeded"
    clock.t += 10  # two more cycles
    again = state.job(SALESFORCE, good.id).to_json()["status"]
    assert again["lastExecution"]["activityIdentifier"] != one["activityIdentifier"]
    assert again["lastExecution"]["timeEnded"] > one["timeEnded"]
    assert again["code"] == "Active"
    failing = state.job(SCIM, bad.id).to_json()["status"]
    assert failing["lastExecution"]["state"] == "Failed"
    assert failing["lastExecution"]["error"]["code"] == "SandboxCycleFailed"
    assert failing["countSuccessiveCompleteFailures"] == 3


def test_per_principal_seed_fields_override_the_profile() -> None:
    seed = load_seed().model_dump()
    seed["servicePrincipals"][1] |= {"quarantineAfterS": 5, "failCycles": True}
    state = TenantState(load_seed(seed), clock=Clock())
    rules = state.rules_for(SCIM, CycleRules(quarantine_after_s=None))
    assert (rules.quarantine_after_s, rules.fail_cycles) == (5, True)
    assert state.rules_for(SALESFORCE, CycleRules()).quarantine_after_s is None


async def test_a_5xx_after_made_makes_the_job(sb: InProcessSandbox) -> None:
    sb.ctx.engine.profile = sb.ctx.engine.profile.merged({"create_5xx_after_made_rate": 1.0})
    token = await sb.token()
    url = sb.sp_url(SALESFORCE, "/jobs")
    status, _, body = await graph_call(
        sb, "POST", url, token=token, json={"templateId": "salesforce"}
    )
    assert status == 500
    assert body["error"]["code"] == "UnknownError"
    assert len(sb.ctx.state.jobs[SALESFORCE]) == 1
    assert sb.ctx.state.stats.faults["5xx_after_made"] == 1


async def test_lagging_list_over_http(sb: InProcessSandbox) -> None:
    sb.ctx.engine.profile = sb.ctx.engine.profile.merged({"job_list_lag_s": 30})
    token = await sb.token()
    url = sb.sp_url(SALESFORCE, "/jobs")
    status, _, made = await graph_call(
        sb, "POST", url, token=token, json={"templateId": "salesforce"}
    )
    assert status == 201
    assert (await graph_call(sb, "GET", url, token=token))[2]["value"] == []
    by_id = sb.sp_url(SALESFORCE, f"/jobs/{made['id']}")
    assert (await graph_call(sb, "GET", by_id, token=token))[0] == 200


async def test_stripped_roles_answer_401_unknown_error(sb: InProcessSandbox) -> None:
    sb.ctx.engine.profile = sb.ctx.engine.profile.merged({"token_roles": []})
    token = await sb.token()
    assert _claims(token)["roles"] == []
    status, _, body = await graph_call(sb, "GET", sb.sp_url(SALESFORCE, "/templates"), token=token)
    assert (status, body["error"]["code"], body["error"]["message"]) == (401, "UnknownError", "")


async def test_owned_by_reaches_only_owned_principals(sb: InProcessSandbox) -> None:
    token = await sb.token(OWNED_BY_CLIENT[0])
    assert _claims(token)["roles"] == ["Application.ReadWrite.OwnedBy"]
    owned = await graph_call(sb, "GET", sb.sp_url(SALESFORCE, "/templates"), token=token)
    assert owned[0] == 200
    status, _, body = await graph_call(sb, "GET", sb.sp_url(GITHUB, "/templates"), token=token)
    assert (status, body["error"]["code"], body["error"]["message"]) == (401, "UnknownError", "")
    assert sb.ctx.state.stats.faults["not_owner"] == 1
