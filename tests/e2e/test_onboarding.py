"""End to end, as separate processes: Redis, the sandbox, the API and two workers, onboarding
gallery apps (issue 13).

30 requests name gallery apps (by template id or gallery name) with assignments, a scope and
attribute mappings, while 10% of instantiate answers are lost after the app was made, 10% are
5xx after it was made, new principals answer 404 / 401 for 1.5 s and the principal list lags
0.5 s: exactly 30 apps, each with one job, its assignments once, SyncAll as asked and the
mappings applied. The same 30 submitted again change nothing in the tenant.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sandbox.seed import load_seed
from tests.helpers.stack import Stack, e2e_stack, submit, wait_terminal

pytestmark = pytest.mark.e2e

API_KEY = "pk_e2e-onboarding-key-0123456789abcdef"
N = 30
SERVICENOW = "6f3b2a4e-1c55-4a8e-9b1e-5d2c8f7a9e01"
ZENDESK = "0d2f5c1b-7e3a-4b6d-8c9f-1a2b3c4d5e02"
SCIM = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c04"
ROLES = {  # template -> the default user role the step must pick
    SERVICENOW: "18d14569-c3bd-439b-9a66-3a2aee01d14f",  # "User"
    ZENDESK: "3c1a0b7e-52f4-4d0e-9b3a-6e8f1d2c4a03",  # the only one (msiam_access)
    SCIM: "00000000-0000-0000-0000-000000000000",  # none declared: default access
}
MSIAM = "8b292bda-39b6-4b77-849e-887565235bb0"
USERS = "Provision Microsoft Entra ID Users"
SEED = {
    "tenantId": "7c1f0a52-2f6a-4d33-9b1e-5a4c3d2e1f00",
    "applications": [
        {
            "clientId": "3d9e8f7a-6b5c-4d3e-2f1a-0b9c8d7e6f5a",
            "clientSecret": "e2e-onboarding-secret-Qm8vT2xR5pLk",
            "roles": [
                "Synchronization.ReadWrite.All",
                "Application.ReadWrite.All",
                "AppRoleAssignment.ReadWrite.All",
            ],
        }
    ],
    "servicePrincipals": [],
    "applicationTemplates": [t.model_dump() for t in load_seed().applicationTemplates],
}
FAULTS = {
    "activation_delay_ms": 300,
    "random_seed": 13,
    "gallery": {
        "lost_instantiate_rate": 0.10,
        "instantiate_5xx_rate": 0.10,
        "new_principal_lag_ms": 1500,
        "principal_list_lag_ms": 500,
    },
}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with e2e_stack(
        tmp_path,
        api_key=API_KEY,
        queue="e2e-onboarding",
        seed=SEED,
        faults=FAULTS,
        PROVISIONER_VERIFY_SETTLE_S="1",
        PROVISIONER_INSTANTIATE_SETTLE_S="5",
        PROVISIONER_APP_POLL_S="0.5",
    ) as running:
        yield running


def body_for(i: int) -> dict[str, Any]:
    template = (SERVICENOW, ZENDESK, SCIM)[i % 3]
    app: dict[str, Any] = {"displayName": f"Onboarded app {i:02d} ('quoted')"}
    if i % 2:
        app["galleryName"] = {SERVICENOW: "ServiceNow", ZENDESK: "Zendesk", SCIM: "Contoso SCIM"}[
            template
        ]
    else:
        app["applicationTemplateId"] = template
    assignments: list[dict[str, str]] = [{"principalId": f"0a1b2c3d-0000-4000-8000-{i:012d}"}]
    if template == SERVICENOW:
        assignments.append({"principalId": f"1a1b2c3d-0000-4000-8000-{i:012d}", "appRoleId": MSIAM})
    target = "costCenter" if template == SERVICENOW else "department"
    return {
        "application": app,
        "assignments": assignments,
        "scope": "all" if i % 4 == 0 else "assigned",
        "attributeMappings": [
            {"objectMapping": USERS, "target": target, "source": "employeeId"},
            {"objectMapping": USERS, "target": "title", "remove": True},
        ],
    }


async def run_round(stack: Stack) -> tuple[dict[str, dict[str, Any]], float]:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    began = time.monotonic()
    async with aiohttp.ClientSession(headers=headers) as session:
        ids = await asyncio.gather(*(submit(session, stack.base, body_for(i)) for i in range(N)))
        done = await wait_terminal(session, stack.base, list(ids), timeout_s=240)
    assert len(done) == N, f"{N - len(done)} requests did not finish"
    failed = {rid: r["error"] for rid, r in done.items() if r["state"] != "succeeded"}
    assert not failed
    return {r["application"]["displayName"]: r for r in done.values()}, time.monotonic() - began


async def test_thirty_gallery_apps_under_faults_then_the_same_thirty_change_nothing(
    stack: Stack,
) -> None:
    first, first_s = await run_round(stack)
    stats = stack.sandbox.stats()
    gallery = stats["gallery"]
    assert gallery["instantiated"] == N
    assert gallery["duplicateApps"] == []
    apps = {a["displayName"]: a for a in gallery["apps"]}
    assert len(apps) == N
    for i in range(N):
        body = body_for(i)
        name = body["application"]["displayName"]
        record, app = first[name], apps[name]
        sp = app["id"]
        assert record["servicePrincipalId"] == sp
        template = (SERVICENOW, ZENDESK, SCIM)[i % 3]
        assert app["templateId"] == template
        jobs = stats["jobs"][sp]
        assert len(jobs) == 1
        assert record["jobId"] == jobs[0]["id"]
        assert stats["starts"][jobs[0]["id"]] == 1
        wanted = sorted(
            [a["principalId"], a.get("appRoleId", ROLES[template])] for a in body["assignments"]
        )
        assert gallery["assignments"][sp] == wanted
        assert gallery["syncAll"][sp] == ("true" if body["scope"] == "all" else "false")
        mappings = gallery["mappings"][jobs[0]["id"]]
        target = body["attributeMappings"][0]["target"]
        assert mappings[f"{USERS}.{target}"] == "[employeeId]"
        assert f"{USERS}.title" not in mappings
        assert f"{USERS}.userName" in mappings  # the others kept
        assert gallery["schemaPuts"][jobs[0]["id"]] == 1
    faults = {k: gallery.get(k, 0) for k in ("instantiate_lost", "instantiate_5xx")}
    assert all(faults.values()), f"an instantiate fault was never injected: {faults}"
    assert (
        stats["faults"].get("new_principal", 0)
        + stats["calls"].get("servicePrincipals.get", {}).get("404", 0)
        > 0
    ), "no replication lag was seen"

    second, second_s = await run_round(stack)
    again = stack.sandbox.stats()
    assert again["gallery"]["instantiated"] == N
    assert again["gallery"]["assignments_added"] == gallery["assignments_added"]
    assert again["gallery"]["assignments"] == gallery["assignments"]
    assert again["gallery"]["schemaPuts"] == gallery["schemaPuts"]
    assert again["gallery"].get("schema_puts") == gallery.get("schema_puts") == N
    assert {sp: len(j) for sp, j in again["jobs"].items()} == {
        sp: len(j) for sp, j in stats["jobs"].items()
    }
    assert again["starts"] == stats["starts"]
    for name, record in second.items():
        assert record["servicePrincipalId"] == first[name]["servicePrincipalId"]
        outcomes = {h["step"]: h["outcome"] for h in record["history"] if h["step"]}
        assert outcomes["instantiate_app"] == "adopted"
        assert outcomes["assign"] == "skipped"
        assert outcomes["map_attributes"] == "skipped"
    summary = {
        "apps": N,
        "first_round_s": round(first_s, 1),
        "second_round_s": round(second_s, 1),
        "instantiate_calls": stats["calls"].get("applicationTemplates.instantiate", {}),
        "lost_answers": faults["instantiate_lost"],
        "5xx_after_made": faults["instantiate_5xx"],
        "new_principal_401": stats["faults"].get("new_principal", 0),
        "principal_get_404": stats["calls"].get("servicePrincipals.get", {}).get("404", 0),
        "assignments_added": gallery["assignments_added"],
        "duplicate_adds_refused": gallery.get("assignments_duplicate", 0),
        "schema_puts": gallery.get("schema_puts"),
    }
    print("\nONBOARDING SUMMARY " + json.dumps(summary))
    for child in stack.children:
        assert child.alive(), child.log()[-2000:]
