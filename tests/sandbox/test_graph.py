"""Graph contract: every route's status, body shape and headers (in-process sandbox over TLS)."""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.helpers.sandbox import (
    ODATA_JSON,
    InProcessSandbox,
    assert_graph_error,
    graph_call,
    in_process_sandbox,
)

SALESFORCE = "15331f0e-bdc6-41e2-afa0-a4c9abfe90b3"
SCIM = "cbe29441-8636-4563-a4a8-c390c0e83cb4"
GITHUB = "01d564d9-8163-464e-bc90-b017bf5c8fa6"
JOB_KEYS = {"id", "templateId", "schedule", "status", "synchronizationJobSettings"}
STATUS_KEYS = {
    "code",
    "countSuccessiveCompleteFailures",
    "escrowsPruned",
    "lastExecution",
    "lastSuccessfulExecution",
    "lastSuccessfulExecutionWithExports",
    "progress",
    "quarantine",
    "steadyStateFirstAchievedTime",
    "steadyStateLastAchievedTime",
    "synchronizedEntryCountByType",
    "troubleshootingUrl",
}


async def test_full_route_contract(sb: InProcessSandbox) -> None:
    # A started job stays "NotRun" throughout (the fixture's 100 ms would race the reads
    # after each action on a loaded machine).
    sb.ctx.engine.profile = sb.ctx.engine.profile.merged({"activation_delay_ms": 600_000})
    token = await sb.token()
    crid = str(uuid.uuid4())
    h = {"client-request-id": crid}

    status, headers, body = await graph_call(
        sb, "GET", sb.sp_url(SCIM, "/templates"), token=token, headers=h
    )
    assert status == 200
    assert headers["Content-Type"] == ODATA_JSON
    assert headers["client-request-id"] == crid
    uuid.UUID(headers["request-id"])
    assert "Date" in headers
    assert body["@odata.context"].endswith(f"servicePrincipals('{SCIM}')/synchronization/templates")
    assert [(t["id"], t["default"]) for t in body["value"]] == [("scim", False), ("scimV2", True)]
    assert {"id", "applicationId", "default", "factoryTag", "metadata"} <= set(body["value"][0])

    status, headers, job = await graph_call(
        sb, "POST", sb.sp_url(SCIM, "/jobs"), token=token, json={"templateId": "scimV2"}
    )
    assert status == 201
    assert job["@odata.context"].endswith("/synchronization/jobs/$entity")
    assert set(job) >= JOB_KEYS
    assert set(job["status"]) == STATUS_KEYS
    assert job["schedule"] == {"expiration": None, "interval": "PT40M", "state": "Disabled"}
    assert job["status"]["code"] == "NotConfigured"
    assert job["status"]["steadyStateFirstAchievedTime"] == "0001-01-01T00:00:00Z"
    assert job["id"].startswith("scimV2.")
    assert len(job["id"].split(".")) == 3
    job_url = sb.sp_url(SCIM, f"/jobs/{job['id']}")

    status, _, listed = await graph_call(sb, "GET", sb.sp_url(SCIM, "/jobs"), token=token)
    assert status == 200
    assert [j["id"] for j in listed["value"]] == [job["id"]]
    assert "@odata.nextLink" not in listed

    secrets = {
        "value": [
            {"key": "BaseAddress", "value": "https://scim.example/v2"},
            {"key": "SecretToken", "value": "token-value"},
            {"key": "SyncNotificationSettings", "value": '{"Enabled":false}'},
            {"key": "SyncAll", "value": "false"},
        ]
    }
    status, headers, body = await graph_call(
        sb, "PUT", sb.sp_url(SCIM, "/secrets"), token=token, json=secrets
    )
    assert (status, body) == (204, None)
    assert "request-id" in headers
    status, _, body = await graph_call(sb, "GET", sb.sp_url(SCIM, "/secrets"), token=token)
    assert status == 200
    assert {s["key"]: s["value"] for s in body["value"]} == {
        "BaseAddress": "https://scim.example/v2",
        "SecretToken": "*",
        "SyncNotificationSettings": '{"Enabled":false}',
        "SyncAll": "false",
    }

    creds = {"useSavedCredentials": False, "credentials": [{"key": "SecretToken", "value": "x"}]}
    status, _, _ = await graph_call(
        sb, "POST", f"{job_url}/validateCredentials", token=token, json=creds
    )
    assert status == 204
    collection = {**creds, "templateId": "scimV2"}
    status, _, _ = await graph_call(
        sb, "POST", sb.sp_url(SCIM, "/jobs/validateCredentials"), token=token, json=collection
    )
    assert status == 204

    for action, expected in (("start", "NotRun"), ("pause", "Paused"), ("restart", "NotRun")):
        status, _, body = await graph_call(sb, "POST", f"{job_url}/{action}", token=token)
        assert (status, body) == (204, None), action
        _, _, got = await graph_call(sb, "GET", job_url, token=token)
        assert got["status"]["code"] == expected, action
    status, _, _ = await graph_call(
        sb,
        "POST",
        f"{job_url}/restart",
        token=token,
        json={"criteria": {"resetScope": "Watermark, Escrows, QuarantineState"}},
    )
    assert status == 204

    status, _, body = await graph_call(sb, "DELETE", job_url, token=token)
    assert (status, body) == (204, None)
    status, headers, body = await graph_call(sb, "GET", job_url, token=token)
    assert status == 404
    assert_graph_error(status, headers, body, "Request_ResourceNotFound")

    stats = sb.ctx.state.stats_json()
    assert stats["calls"]["jobs.create"] == {"201": 1}
    assert stats["starts"] == {job["id"]: 1}
    assert stats["secrets"] == {SCIM: 1}
    assert stats["total_calls"] == sum(sum(c.values()) for c in stats["calls"].values())


async def test_start_moves_to_active_after_delay_and_counts_every_start(
    sb: InProcessSandbox,
) -> None:
    import asyncio

    # A delay the GET right after the start falls inside on a loaded machine too.
    sb.ctx.engine.profile = sb.ctx.engine.profile.merged({"activation_delay_ms": 2000})
    token = await sb.token()
    _, _, job = await graph_call(
        sb, "POST", sb.sp_url(SALESFORCE, "/jobs"), token=token, json={"templateId": "salesforce"}
    )
    url = sb.sp_url(SALESFORCE, f"/jobs/{job['id']}")
    assert (await graph_call(sb, "POST", f"{url}/start", token=token))[0] == 204
    _, _, got = await graph_call(sb, "GET", url, token=token)
    assert (got["schedule"]["state"], got["status"]["code"]) == ("Active", "NotRun")
    async with asyncio.timeout(30):  # only against a hang: the delay ends, the job runs
        while got["status"]["code"] == "NotRun":
            await asyncio.sleep(0.1)
            _, _, got = await graph_call(sb, "GET", url, token=token)
    assert (got["schedule"]["state"], got["status"]["code"]) == ("Active", "Active")
    assert got["status"]["lastExecution"]["state"] == "Succeeded"
    assert (await graph_call(sb, "POST", f"{url}/start", token=token))[0] == 204
    stats = sb.ctx.state.stats_json()
    assert stats["starts"][job["id"]] == 2
    assert stats["jobs"][SALESFORCE][0]["starts"] == 2


async def test_quarantine_and_reject_magic_values(sb: InProcessSandbox) -> None:
    import asyncio

    token = await sb.token()
    bad = {"value": [{"key": "SecretToken", "value": "abc sandbox:quarantine"}]}
    assert (await graph_call(sb, "PUT", sb.sp_url(SCIM, "/secrets"), token=token, json=bad))[
        0
    ] == 204
    _, _, job = await graph_call(
        sb, "POST", sb.sp_url(SCIM, "/jobs"), token=token, json={"templateId": "scim"}
    )
    url = sb.sp_url(SCIM, f"/jobs/{job['id']}")
    saved = {"useSavedCredentials": True}
    assert (await graph_call(sb, "POST", f"{url}/validateCredentials", token=token, json=saved))[
        0
    ] == 204
    assert (await graph_call(sb, "POST", f"{url}/start", token=token))[0] == 204
    await asyncio.sleep(0.15)
    _, _, got = await graph_call(sb, "GET", url, token=token)
    assert got["schedule"]["state"] == "Active"
    assert got["status"]["code"] == "Quarantine"
    q = got["status"]["quarantine"]
    assert q["error"]["tenantActionable"] is True
    assert q["error"]["code"]
    assert q["reason"] in {
        "EncounteredBaseEscrowThreshold",
        "EncounteredTotalEscrowThreshold",
        "EncounteredEscrowProportionThreshold",
        "EncounteredQuarantineException",
        "Unknown",
        "QuarantinedOnDemand",
        "TooManyDeletes",
        "IngestionInterrupted",
    }

    reject = {"credentials": [{"key": "Password", "value": "sandbox:reject"}]}
    status, headers, body = await graph_call(
        sb, "POST", f"{url}/validateCredentials", token=token, json=reject
    )
    assert status == 400
    assert_graph_error(status, headers, body, "BadRequest")
    status, headers, body = await graph_call(
        sb,
        "POST",
        sb.sp_url(SCIM, "/jobs/validateCredentials"),
        token=token,
        json={**reject, "templateId": "scim"},
    )
    assert status == 400
    reject_saved = {"value": [{"key": "SecretToken", "value": "sandbox:reject"}]}
    assert (
        await graph_call(sb, "PUT", sb.sp_url(SCIM, "/secrets"), token=token, json=reject_saved)
    )[0] == 204
    status, _, _ = await graph_call(
        sb, "POST", f"{url}/validateCredentials", token=token, json=saved
    )
    assert status == 400


async def test_paging_returns_every_item_once(certs_dir: Path) -> None:
    seed = {
        "tenantId": "5f0c1e8a-7d2b-4e6f-9a1c-3b8d5e2f4a60",
        "applications": [
            {
                "clientId": "adf03846-4f4d-4731-8425-4f4b2d8e0197",
                "clientSecret": "s3cret",
                "roles": ["Synchronization.ReadWrite.All"],
            }
        ],
        "servicePrincipals": [
            {
                "id": SCIM,
                "templates": [{"id": f"t{i}", "default": i == 3} for i in range(7)],
            }
        ],
    }
    async with in_process_sandbox(certs_dir, seed=seed, faults={"page_size": 3}) as sb:
        token = await sb.token()
        for i in range(8):
            await graph_call(
                sb, "POST", sb.sp_url(SCIM, "/jobs"), token=token, json={"templateId": f"t{i % 7}"}
            )
        for suffix, expected in (("/templates", 7), ("/jobs", 8)):
            url: str | None = sb.sp_url(SCIM, suffix)
            seen: list[str] = []
            pages = 0
            while url:
                status, _, body = await graph_call(sb, "GET", url, token=token)
                assert status == 200
                assert len(body["value"]) <= 3
                seen += [item["id"] for item in body["value"]]
                url = body.get("@odata.nextLink")
                if url:
                    assert url.startswith(f"{sb.graph_url}/servicePrincipals/")
                    assert "$skiptoken=" in url
                pages += 1
            assert len(seen) == expected == len(set(seen))
            assert pages == -(-expected // 3)
        bad = sb.sp_url(SCIM, "/jobs") + "?$skiptoken=Zm9vLmJhcg"
        status, _, body = await graph_call(sb, "GET", bad, token=token)
        assert status == 400
