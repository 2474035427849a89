"""Who may see and act on which request, through the real app against a real Redis: retries
and cancels pass the policy and the intake limits, operators see and act on every caller's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from service.api.app import STORE
from service.core.config_values import hash_api_key
from service.core.models import ErrorInfo, State
from tests.api.test_routes import API_KEY, AUTH, BASE, OTHER_AUTH, OTHER_KEY, api_client, sp
from tests.api.test_routes import make_settings as base_settings

OPS_KEY = "ops-secret-key"
OPS_AUTH = {"Authorization": f"Bearer {OPS_KEY}"}
KEYS = f"alpha:{hash_api_key(API_KEY)},beta:{hash_api_key(OTHER_KEY)},ops:{hash_api_key(OPS_KEY)}"


def policy_file(tmp_path: Path, alpha_targets: list[str], name: str = "policy.json") -> Path:
    path = tmp_path / name
    path.write_text(
        json.dumps(
            {
                "callers": {
                    "alpha": {
                        "permissions": ["read", "write"],
                        "service_principals": alpha_targets,
                    },
                    "beta": {"permissions": ["read", "write"]},
                    "ops": {"permissions": ["read", "write", "operator"]},
                }
            }
        )
    )
    return path


def settings(redis_url: str, policy: Path, **overrides: Any) -> Any:
    return base_settings(redis_url, api_keys=KEYS, access_policy_file=policy, **overrides)


async def fail(client: TestClient[Any, Any], rid: str) -> None:
    assert client.app is not None
    store = client.app[STORE]
    record = await store.get(rid)
    assert record is not None
    record.state = State.FAILED
    record.error = ErrorInfo(code="GraphRequestFailed", message="boom")
    await store.save(record)


async def test_retry_after_the_policy_dropped_the_principal_is_403(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    allowed = policy_file(tmp_path, ["*"], "before.json")
    async with api_client(settings(redis_url, allowed)) as c:
        resp = await c.post(BASE, json={"servicePrincipalId": sp(1)}, headers=AUTH)
        assert resp.status == 202
        rid = (await resp.json())["id"]
        await fail(c, rid)
    narrowed = policy_file(tmp_path, [sp(2)], "after.json")
    async with api_client(settings(redis_url, narrowed)) as c:
        new = await c.post(BASE, json={"servicePrincipalId": sp(1)}, headers=AUTH)
        assert new.status == 403
        for action in ("retry", "cancel"):
            resp = await c.post(f"{BASE}/{rid}/{action}", headers=AUTH)
            assert resp.status == 403, action
            assert "may not provision this service principal" in (await resp.json())["detail"]
        # An operator acting on it is refused too: the owner may no longer provision it.
        resp = await c.post(f"{BASE}/{rid}/retry", headers=OPS_AUTH)
        assert resp.status == 403
        assert "owner" in (await resp.json())["detail"]
        record = await c.app[STORE].get(rid)  # type: ignore[union-attr]
        assert record is not None
        assert record.state is State.FAILED
        assert [h.outcome.value for h in record.history] == []  # never re-queued


async def test_retries_beyond_the_rate_are_429_and_enqueue_nothing(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    policy = policy_file(tmp_path, ["*"])
    conf = settings(redis_url, policy, intake_rate_limit=3, intake_rate_window_s=3600)
    async with api_client(conf) as c:
        resp = await c.post(BASE, json={"servicePrincipalId": sp(1)}, headers=AUTH)
        rid = (await resp.json())["id"]
        statuses = []
        for _ in range(4):
            await fail(c, rid)
            resp = await c.post(f"{BASE}/{rid}/retry", headers=AUTH)
            statuses.append(resp.status)
        # One new request and two retries fill the rate of 3; the next retries are refused.
        assert statuses == [202, 202, 429, 429]
        assert int(resp.headers["Retry-After"]) >= 1
        record = await c.app[STORE].get(rid)  # type: ignore[union-attr]
        assert record is not None
        assert record.state is State.FAILED
        cancel = await c.post(f"{BASE}/{rid}/cancel", headers=AUTH)
        assert cancel.status == 429


async def test_retry_while_the_queue_is_full_is_503(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    async with api_client(settings(redis_url, policy_file(tmp_path, ["*"]))) as c:
        resp = await c.post(BASE, json={"servicePrincipalId": sp(1)}, headers=AUTH)
        rid = (await resp.json())["id"]
        await fail(c, rid)
    conf = settings(redis_url, policy_file(tmp_path, ["*"]), max_queue_depth=1)
    async with api_client(conf) as c:
        await c.post(BASE, json={"servicePrincipalId": sp(2)}, headers=OTHER_AUTH)  # fills it
        resp = await c.post(f"{BASE}/{rid}/retry", headers=AUTH)
        assert resp.status == 503
        assert resp.headers["Retry-After"]


async def test_operator_reads_lists_retries_and_cancels_other_callers_requests(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    async with api_client(settings(redis_url, policy_file(tmp_path, ["*"]))) as c:
        a = await (await c.post(BASE, json={"servicePrincipalId": sp(1)}, headers=AUTH)).json()
        b = await (
            await c.post(BASE, json={"servicePrincipalId": sp(2)}, headers=OTHER_AUTH)
        ).json()
        # Callers see only their own, and may not ask for another caller's list.
        assert (await c.get(f"{BASE}/{a['id']}", headers=OTHER_AUTH)).status == 404
        assert (await c.get(BASE, params={"caller": "alpha"}, headers=OTHER_AUTH)).status == 403
        own = await (await c.get(BASE, params={"caller": "beta"}, headers=OTHER_AUTH)).json()
        assert [r["id"] for r in own["items"]] == [b["id"]]
        # The operator sees both, or one caller's.
        assert (await c.get(f"{BASE}/{a['id']}", headers=OPS_AUTH)).status == 200
        page = await (await c.get(BASE, headers=OPS_AUTH)).json()
        assert {r["id"] for r in page["items"]} == {a["id"], b["id"]}
        page = await (await c.get(BASE, params={"caller": "alpha"}, headers=OPS_AUTH)).json()
        assert [r["id"] for r in page["items"]] == [a["id"]]
        # ...and acts on them; the record stays its owner's.
        resp = await c.post(f"{BASE}/{b['id']}/cancel", headers=OPS_AUTH)
        assert resp.status == 202
        assert (await resp.json())["caller"] == "beta"
        await fail(c, a["id"])
        resp = await c.post(f"{BASE}/{a['id']}/retry", headers=OPS_AUTH)
        assert resp.status == 202
        assert await redis.exists(f"arq:job:{a['id']}")
        # Beta still cannot touch alpha's.
        assert (await c.post(f"{BASE}/{a['id']}/cancel", headers=OTHER_AUTH)).status == 404


async def test_retrying_a_gallery_app_request_needs_the_right_to_create_apps(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    """A gallery request that failed before its app was made has no principal yet: a retry
    passes the rule a new one does (a policy allowing every principal), never a 500."""
    body = {
        "application": {
            "applicationTemplateId": "6f3b2a4e-1c55-4a8e-9b1e-5d2c8f7a9e01",
            "displayName": "Retried app",
        }
    }
    async with api_client(settings(redis_url, policy_file(tmp_path, ["*"], "all.json"))) as c:
        resp = await c.post(BASE, json=body, headers=AUTH)
        assert resp.status == 202, await resp.text()
        rid = (await resp.json())["id"]
        await fail(c, rid)
        retried = await c.post(f"{BASE}/{rid}/retry", headers=AUTH)
        assert retried.status == 202, await retried.text()
        await fail(c, rid)
    narrowed = policy_file(tmp_path, [sp(2)], "narrowed.json")
    async with api_client(settings(redis_url, narrowed)) as c:
        assert (await c.post(BASE, json=body, headers=AUTH)).status == 403
        for action in ("retry", "cancel"):
            resp = await c.post(f"{BASE}/{rid}/{action}", headers=AUTH)
            assert resp.status == 403, (action, await resp.text())
            assert "may not create applications" in (await resp.json())["detail"]
