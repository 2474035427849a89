"""GET /v1/applications[/{id}] over real HTTP against a real Redis: the view, the caller's
requests, visibility under the policy (another caller's application is 404), paging by health."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from service.api.state import STORE
from service.core.application_store import ApplicationStore
from service.core.applications import Application, Reading
from service.core.fields import utcnow
from service.core.health import Health
from service.core.models import Record, State
from tests.api.test_routes import AUTH, OTHER_AUTH, api_client, make_settings, sp
from workers.watch.rules import Schedule, observed, registered

SCHEDULE = Schedule((10, 20), 0.0, 1)
QUARANTINED = Reading(health=Health.QUARANTINED, reason="quarantined (QuarantinedOnDemand)")


async def _succeeded(client: TestClient[Any, Any], principal: str, caller: str) -> Record:
    """A succeeded request of ``caller`` whose job is now watched."""
    store = client.server.app[STORE]
    record = Record(
        id=uuid.uuid4().hex,
        service_principal_id=principal,
        state=State.SUCCEEDED,
        template_id="scim",
        job_id=f"scim.{principal[-4:]}",
        caller=caller,
    )
    await store.save(record, notify=False)
    await ApplicationStore.of(store).update(
        principal, lambda app: registered(app, record, utcnow(), SCHEDULE).update, create=True
    )
    return record


async def _quarantine(client: TestClient[Any, Any], principal: str) -> None:
    def change(app: Application):  # type: ignore[no-untyped-def]
        return observed(app, app.jobs[0], QUARANTINED, utcnow(), SCHEDULE).update

    await ApplicationStore.of(client.server.app[STORE]).update(principal, change)


async def test_the_view_shows_jobs_and_the_callers_own_requests(
    redis: Redis, redis_url: str
) -> None:
    async with api_client(make_settings(redis_url)) as client:
        first = await _succeeded(client, sp(1), "alpha")
        second = await _succeeded(client, sp(1), "alpha")
        await _succeeded(client, sp(1), "beta")  # beta touched it too: alpha does not see it
        await _quarantine(client, sp(1))
        resp = await client.get(f"/v1/applications/{sp(1)}", headers=AUTH)
        assert resp.status == 200
        body = await resp.json()
        assert body["servicePrincipalId"] == sp(1)
        assert body["health"] == "quarantined"
        [job] = body["jobs"]
        assert {"jobId", "templateId", "health", "scheduleState", "statusCode", "quarantine",
                "lastExecution", "checkedAt", "nextCheckAt"} <= set(job)  # fmt: skip
        assert (job["jobId"], job["health"]) == (f"scim.{sp(1)[-4:]}", "quarantined")
        assert job["reason"] == "quarantined (QuarantinedOnDemand)"
        assert job["history"][-1]["from"] == "unknown"
        assert job["history"][-1]["to"] == "quarantined"
        assert "step" not in job
        assert [r["id"] for r in body["requests"]] == [second.id, first.id]
        assert body["requests"][0]["state"] == "succeeded"
        # beta sees it too (its request touched it), with only its own request
        beta = await (await client.get(f"/v1/applications/{sp(1)}", headers=OTHER_AUTH)).json()
        assert len(beta["requests"]) == 1


async def test_another_callers_application_is_not_found(redis: Redis, redis_url: str) -> None:
    async with api_client(make_settings(redis_url)) as client:
        await _succeeded(client, sp(2), "alpha")
        for path, auth, status in [
            (f"/v1/applications/{sp(2)}", OTHER_AUTH, 404),
            (f"/v1/applications/{sp(3)}", AUTH, 404),
            ("/v1/applications/not-a-guid", AUTH, 404),
            (f"/v1/applications/{sp(2)}", {}, 401),
        ]:
            resp = await client.get(path, headers=auth)
            assert resp.status == status, path
            assert resp.content_type == "application/problem+json"
        listed = await (await client.get("/v1/applications", headers=OTHER_AUTH)).json()
        assert listed == {"items": [], "nextCursor": None}


async def test_a_policy_that_names_the_principal_shows_it(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        f"callers:\n  alpha: {{}}\n  beta:\n    permissions: [read]\n"
        f"    service_principals: [{sp(4)}]\n"
    )
    async with api_client(make_settings(redis_url, access_policy_file=policy)) as client:
        await _succeeded(client, sp(4), "alpha")
        await _succeeded(client, sp(5), "alpha")
        assert (await client.get(f"/v1/applications/{sp(4)}", headers=OTHER_AUTH)).status == 200
        assert (await client.get(f"/v1/applications/{sp(5)}", headers=OTHER_AUTH)).status == 404
        body = await (await client.get("/v1/applications", headers=OTHER_AUTH)).json()
        assert [a["servicePrincipalId"] for a in body["items"]] == [sp(4)]


async def test_the_list_pages_and_filters_by_health(redis: Redis, redis_url: str) -> None:
    async with api_client(make_settings(redis_url)) as client:
        for n in range(10, 15):
            await _succeeded(client, sp(n), "alpha")
        for n in (11, 13, 14):
            await _quarantine(client, sp(n))
        seen: list[str] = []
        cursor = ""
        while True:
            query = "health=quarantined&limit=2" + (f"&cursor={cursor}" if cursor else "")
            resp = await client.get(f"/v1/applications?{query}", headers=AUTH)
            assert resp.status == 200
            page = await resp.json()
            seen += [a["servicePrincipalId"] for a in page["items"]]
            assert all(a["health"] == "quarantined" for a in page["items"])
            assert "requests" not in page["items"][0]
            if not page["nextCursor"]:
                break
            cursor = page["nextCursor"]
        assert seen == [sp(11), sp(13), sp(14)]
        for query, field in [("health=sick", "health"), ("limit=0", "limit"), ("x=1", "x")]:
            resp = await client.get(f"/v1/applications?{query}", headers=AUTH)
            assert resp.status == 422
            assert (await resp.json())["errors"][0]["field"] == field
        metrics = await (await client.get("/metrics")).text()
        assert 'provisioner_applications{health="quarantined"} 3.0' in metrics
        assert "provisioner_watched_jobs 5.0" in metrics
