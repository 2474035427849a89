"""The insider attacks of the security review, performed against the real app over HTTP with
real signatures and a real Redis: each one must be refused with nothing stored or enqueued."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from service.api.app import create_app
from service.core.config_values import hash_api_key
from service.core.errors import ConfigError
from tests.api.test_routes import API_KEY, api_client, make_settings
from tests.api.webhooks.test_handler import (
    EXAMPLES,
    NEW_STANDARD,
    SN_KEY,
    SN_SECRET,
    jira_headers,
    jira_payload,
    secrets_env,
    standard_headers,
    webhooks_file,
)

__all__ = ["secrets_env"]  # the fixture, shared with test_handler
SALESFORCE = "15331f0e-bdc6-41e2-afa0-a4c9abfe90b3"  # the app salesforce-prod is bound to
OTHER_APP = "cbe29441-8636-4563-a4a8-c390c0e83cb4"
READONLY_SN_KEY = "servicenow-readonly-key-Wq55"
SYS_USER_ATTACK = (
    "../../../sys_user/62826bf03710200044e0bfc8bcbe5df1?sysparm_input_display_value=true#"
)


@pytest.fixture
async def client(
    redis: Redis, redis_url: str, tmp_path: Path, secrets_env: None
) -> AsyncIterator[TestClient[Any, Any]]:
    keys = ",".join(
        [
            f"alpha:{hash_api_key(API_KEY)}",
            f"servicenow:{hash_api_key(SN_KEY)}",
            f"servicenow-ro:{hash_api_key(READONLY_SN_KEY)}",
        ]
    )
    conf = yaml.safe_load(webhooks_file(tmp_path).read_text())
    conf["sources"]["servicenow"]["bearer_callers"] = ["servicenow", "servicenow-ro"]
    path = tmp_path / "webhooks-attacks.yaml"
    path.write_text(yaml.safe_dump(conf))
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        yaml.safe_dump(
            {
                "callers": {
                    "webhook:jira": {"permissions": ["write"]},
                    "webhook:servicenow": {"permissions": ["write"]},
                    "webhook:standard": {"permissions": ["write"]},
                    "servicenow": {"permissions": ["write"], "service_principals": []},
                    "servicenow-ro": {"permissions": ["read"]},
                }
            }
        )
    )
    settings = make_settings(
        redis_url, api_keys=keys, webhooks_file=path, access_policy_file=policy
    )
    async with api_client(settings) as c:
        yield c


async def nothing_stored(redis: Redis) -> None:
    assert await redis.zcard("provisioner:queue") == 0
    assert [k async for k in redis.scan_iter(match="provisioner:queue:req:*")] == []


def servicenow_body(
    sp: str, ref: str = "", sys_id: str = "3a9f1c2e1b7d2110a4c5e8f2604bcb11"
) -> bytes:
    payload = json.loads((EXAMPLES / "servicenow-catalog-request.json").read_text())
    payload["variables"]["service_principal_id"] = sp
    payload["variables"]["template_id"] = "salesforce"
    payload["variables"]["credentials_ref"] = ref
    payload["sys_id"] = sys_id
    return json.dumps(payload).encode()


def standard_body(sp: str, ref: str | None = None, ticket: str = "CHG-7") -> bytes:
    data: dict[str, Any] = {"servicePrincipalId": sp, "templateId": "salesforce", "ticket": ticket}
    if ref is not None:
        data["credentialsRef"] = ref
    return json.dumps({"data": data}).encode()


def sn_bearer(key: str = SN_KEY) -> dict[str, str]:
    return {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}


def _problem_field(problem: dict[str, Any]) -> list[str]:
    return [e["field"] for e in problem.get("errors", [])]


# -- 1. a credential set only goes where it is bound ---------------------------------------------
def _bound_ticket(source: str, sp: str, nonce: str) -> tuple[bytes, dict[str, str]]:
    """A ticket of ``source`` for ``sp`` naming the ``salesforce-prod`` credential set."""
    if source == "jira":
        body = jira_payload(sp=sp)  # names salesforce-prod
        return body, jira_headers(body, nonce)
    if source == "servicenow":
        return servicenow_body(sp, ref="salesforce-prod"), sn_bearer()
    body = standard_body(sp, ref="salesforce-prod")
    return body, standard_headers(body, f"msg_bind_{nonce}", [NEW_STANDARD])


@pytest.mark.parametrize("source", ["jira", "servicenow", "standard"])
async def test_credential_set_for_another_app_is_422(
    client: TestClient[Any, Any], redis: Redis, source: str
) -> None:
    body, headers = _bound_ticket(source, OTHER_APP, "1")  # the set is for another app
    resp = await client.post(f"/v1/webhooks/{source}", data=body, headers=headers)
    assert resp.status == 422, await resp.text()
    assert resp.content_type == "application/problem+json"
    problem = await resp.json(content_type=None)
    assert _problem_field(problem) == ["credentialsRef"]
    assert "not bound to this service principal" in problem["errors"][0]["reason"]
    assert "sf-client-secret" not in await resp.text()
    await nothing_stored(redis)


async def test_credential_set_with_another_template_is_422(
    client: TestClient[Any, Any], redis: Redis
) -> None:
    payload = json.loads(jira_payload())
    payload["issue"]["fields"]["customfield_10051"]["value"] = "scim"  # bound: salesforce only
    body = json.dumps(payload).encode()
    resp = await client.post("/v1/webhooks/jira", data=body, headers=jira_headers(body, "t"))
    assert resp.status == 422
    problem = await resp.json(content_type=None)
    assert _problem_field(problem) == ["credentialsRef"]
    assert "template" in problem["errors"][0]["reason"]
    await nothing_stored(redis)


@pytest.mark.parametrize("source", ["jira", "servicenow", "standard"])
async def test_credential_set_for_its_own_app_is_accepted(
    client: TestClient[Any, Any], redis: Redis, source: str
) -> None:
    body, headers = _bound_ticket(source, SALESFORCE, "ok")
    resp = await client.post(f"/v1/webhooks/{source}", data=body, headers=headers)
    assert resp.status == 202, await resp.text()
    assert (await resp.json())["hasCredentials"] is True
    assert await redis.zcard("provisioner:queue") == 1


def test_an_unbound_credential_set_stops_start_up(
    tmp_path: Path, redis_url: str, secrets_env: None
) -> None:
    conf = yaml.safe_load((EXAMPLES / "webhooks.yaml").read_text())
    conf["credential_sets"]["salesforce-prod"] = {"clientsecret": "SALESFORCE_PROD_CLIENT_SECRET"}
    path = tmp_path / "old-form.yaml"
    path.write_text(yaml.safe_dump(conf))
    with pytest.raises(ConfigError) as info:
        create_app(make_settings(redis_url, webhooks_file=path))
    message = str(info.value)
    assert message.startswith("PROVISIONER_WEBHOOKS_FILE: credential_sets.salesforce-prod")
    assert "service_principals" in message


# -- 2. a captured Jira delivery does not replay ------------------------------------------------
async def test_jira_replay_with_a_new_or_no_delivery_header_is_the_same_request(
    client: TestClient[Any, Any], redis: Redis
) -> None:
    body = jira_payload()
    first = await client.post("/v1/webhooks/jira", data=body, headers=jira_headers(body, "d-1"))
    assert first.status == 202, await first.text()
    request_id = (await first.json())["id"]
    for identifier in ("d-2", "another-id", None):
        headers = jira_headers(body, identifier or "")
        if identifier is None:
            del headers["X-Atlassian-Webhook-Identifier"]
        again = await client.post("/v1/webhooks/jira", data=body, headers=headers)
        assert again.status in (200, 202)
        assert (await again.json())["id"] == request_id
    assert await redis.zcard("provisioner:queue") == 1  # one job, whatever the header said


@pytest.mark.parametrize(
    ("offset_ms", "drop"),
    [(-6 * 60_000, False), (6 * 60_000, False), (0, True)],
    ids=["6-minutes-old", "6-minutes-ahead", "no-timestamp"],
)
async def test_jira_stale_future_or_missing_timestamp_is_401(
    client: TestClient[Any, Any], redis: Redis, offset_ms: int, drop: bool
) -> None:
    payload = json.loads(jira_payload(timestamp_ms=int(time.time() * 1000) + offset_ms))
    if drop:
        del payload["timestamp"]
    body = json.dumps(payload).encode()
    resp = await client.post("/v1/webhooks/jira", data=body, headers=jira_headers(body, "s"))
    assert resp.status == 401
    assert resp.content_type == "application/problem+json"
    await nothing_stored(redis)


# -- 4. ticket references must have the ticket system's id format -------------------------------
@pytest.mark.parametrize(
    ("source", "reference"),
    [
        ("servicenow", SYS_USER_ATTACK),
        ("servicenow", "3A9F1C2E1B7D2110A4C5E8F2604BCB11"),  # sys_ids are lower-case hex
        ("jira", "../OTHER-1/watchers"),
        ("jira", "IAM-1/../../OTHER-2/watchers"),
        ("jira", "IAM-1?x=1"),
        ("standard", "CHG-7/../../admin"),
    ],
)
async def test_references_outside_the_id_format_are_422(
    client: TestClient[Any, Any], redis: Redis, source: str, reference: str
) -> None:
    if source == "servicenow":
        body = servicenow_body(OTHER_APP, sys_id=reference)
        headers = sn_bearer()
    elif source == "jira":
        payload = json.loads(jira_payload())
        payload["issue"]["key"] = reference
        body = json.dumps(payload).encode()
        headers = jira_headers(body, "r")
    else:
        body = standard_body(OTHER_APP, ticket=reference)
        headers = standard_headers(body, "msg_ref_1", [NEW_STANDARD])
    resp = await client.post(f"/v1/webhooks/{source}", data=body, headers=headers)
    assert resp.status == 422, await resp.text()
    problem = await resp.json(content_type=None)
    assert _problem_field(problem) == ["externalReference"]
    assert "sys_user" not in await resp.text()
    await nothing_stored(redis)


# -- 7. nested JSON, read-only bearer -----------------------------------------------------------
@pytest.mark.parametrize("source", ["jira", "servicenow", "standard"])
async def test_deeply_nested_signed_json_is_400(
    client: TestClient[Any, Any], redis: Redis, source: str
) -> None:
    body = b"[" * 30_000 + b"]" * 30_000  # under the 64 KiB body cap, past any recursion limit
    if source == "jira":
        headers = jira_headers(body, "n")
    elif source == "servicenow":
        headers = standard_headers(body, "msg_nested_sn", [SN_SECRET])
    else:
        headers = standard_headers(body, "msg_nested", [NEW_STANDARD])
    resp = await client.post(f"/v1/webhooks/{source}", data=body, headers=headers)
    assert resp.status == 400, await resp.text()
    assert resp.content_type == "application/problem+json"
    await nothing_stored(redis)


async def test_a_read_only_key_cannot_submit_as_servicenow(
    client: TestClient[Any, Any], redis: Redis
) -> None:
    body = servicenow_body(OTHER_APP)
    resp = await client.post(
        "/v1/webhooks/servicenow", data=body, headers=sn_bearer(READONLY_SN_KEY)
    )
    assert resp.status == 403, await resp.text()
    assert resp.content_type == "application/problem+json"
    assert "write" in (await resp.json(content_type=None))["detail"]
    await nothing_stored(redis)
    # The write key of the same source is accepted, so the 403 is about the permission.
    resp = await client.post("/v1/webhooks/servicenow", data=body, headers=sn_bearer())
    assert resp.status == 202, await resp.text()
