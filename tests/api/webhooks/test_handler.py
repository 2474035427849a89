"""POST /v1/webhooks/{source} over real HTTP with real HMAC signatures and a real Redis."""

from __future__ import annotations

import base64
import hashlib
import hmac
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
from service.api.webhooks.mapping import delivery_errors, map_payload
from service.api.webhooks.sources import load_webhook_sources
from service.core import signing
from service.core.config_values import hash_api_key
from service.core.errors import ConfigError
from service.core.request import ProvisionRequest
from tests.api.test_routes import API_KEY, OTHER_KEY, api_client, make_settings

EXAMPLES = Path(__file__).resolve().parents[3] / "docs" / "examples"
JIRA_SECRET = "jira-webhook-secret-7Yt2Qp"
OLD_STANDARD = "whsec_" + base64.b64encode(b"old-standard-secret-0123456789ab").decode()
NEW_STANDARD = "whsec_" + base64.b64encode(b"new-standard-secret-0123456789ab").decode()
SN_SECRET = "whsec_" + base64.b64encode(b"servicenow-secret-0123456789abcd").decode()
SF_SECRET = "sf-client-secret-never-logged"
SN_KEY = "servicenow-api-key-Kq93"
SECRETS = {
    "JIRA_WEBHOOK_SECRET": JIRA_SECRET,
    "STANDARD_WEBHOOK_SECRET": NEW_STANDARD,
    "STANDARD_WEBHOOK_SECRET_OLD": OLD_STANDARD,
    "SERVICENOW_WEBHOOK_SECRET": SN_SECRET,
    "SALESFORCE_PROD_CLIENT_SECRET": SF_SECRET,
    "SALESFORCE_PROD_SECRET_TOKEN": "sf-token-never-logged",
}


def jira_payload(
    sp: str = "15331f0e-bdc6-41e2-afa0-a4c9abfe90b3",
    key: str = "IAM-1",
    timestamp_ms: int | None = None,
) -> bytes:
    """The shipped Jira example, sent now (Jira's body ``timestamp`` is epoch ms)."""
    data = json.loads((EXAMPLES / "jira-issue-created.json").read_text())
    data["issue"]["fields"]["customfield_10050"] = sp
    data["issue"]["key"] = key
    data["timestamp"] = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    return json.dumps(data).encode()


def jira_headers(body: bytes, delivery: str, secret: str = JIRA_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-Hub-Signature": f"sha256={digest}",
        "X-Atlassian-Webhook-Identifier": delivery,
    }


def standard_headers(
    body: bytes, msg_id: str, secrets: list[str], timestamp: int | None = None
) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    sigs = " ".join(signing.sign(s, msg_id, ts, body) for s in secrets)
    return {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sigs,
    }


def webhooks_file(tmp_path: Path) -> Path:
    conf = yaml.safe_load((EXAMPLES / "webhooks.yaml").read_text())
    conf["sources"]["standard"]["secret_env"] = [
        "STANDARD_WEBHOOK_SECRET",
        "STANDARD_WEBHOOK_SECRET_OLD",
    ]
    path = tmp_path / "webhooks.yaml"
    path.write_text(yaml.safe_dump(conf))
    return path


@pytest.fixture
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
async def client(
    redis: Redis, redis_url: str, tmp_path: Path, secrets_env: None
) -> AsyncIterator[TestClient[Any, Any]]:
    keys = f"alpha:{hash_api_key(API_KEY)},servicenow:{hash_api_key(SN_KEY)}"
    settings = make_settings(redis_url, api_keys=keys, webhooks_file=webhooks_file(tmp_path))
    async with api_client(settings) as c:
        yield c


async def queued(redis: Redis) -> int:
    return int(await redis.zcard("provisioner:queue"))


async def test_jira_signed_delivery_is_accepted_and_redelivery_deduplicated(
    client: TestClient[Any, Any], redis: Redis
) -> None:
    body = jira_payload()
    headers = jira_headers(body, "d-1")
    # Answered without waiting for the work (no worker runs here; the request is queued).
    resp = await client.post("/v1/webhooks/jira", data=body, headers=headers)
    assert resp.status == 202, await resp.text()
    record = await resp.json()
    assert record["caller"] == "webhook:jira"
    assert record["servicePrincipalId"] == "15331f0e-bdc6-41e2-afa0-a4c9abfe90b3"
    assert record["templateId"] == "salesforce"
    assert record["externalReference"] == "IAM-1"
    assert record["hasCredentials"] is True  # credentialsRef salesforce-prod
    assert await queued(redis) == 1

    again = await client.post("/v1/webhooks/jira", data=body, headers=headers)
    assert again.status == 202
    assert (await again.json())["id"] == record["id"]
    assert await queued(redis) == 1
    text = await again.text()
    assert SF_SECRET not in text
    assert JIRA_SECRET not in text


@pytest.mark.parametrize(
    "mutate",
    [
        lambda h: {**h, "X-Hub-Signature": "sha256=" + "0" * 64},
        lambda h: {k: v for k, v in h.items() if k != "X-Hub-Signature"},
        lambda h: {**h, "X-Hub-Signature": h["X-Hub-Signature"].replace("sha256", "sha1")},
    ],
    ids=["wrong", "missing", "sha1"],
)
async def test_jira_bad_signature_is_401_and_enqueues_nothing(
    client: TestClient[Any, Any], redis: Redis, mutate: Any
) -> None:
    body = jira_payload()
    resp = await client.post(
        "/v1/webhooks/jira", data=body, headers=mutate(jira_headers(body, "x"))
    )
    assert resp.status == 401
    assert resp.content_type == "application/problem+json"
    assert await queued(redis) == 0
    assert await redis.dbsize() == 0


async def test_jira_secret_of_another_source_is_rejected(
    client: TestClient[Any, Any], redis: Redis
) -> None:
    body = jira_payload()
    resp = await client.post(
        "/v1/webhooks/jira", data=body, headers=jira_headers(body, "x", secret="guess")
    )
    assert resp.status == 401


async def test_unknown_source_is_404(client: TestClient[Any, Any], redis: Redis) -> None:
    body = jira_payload()
    resp = await client.post("/v1/webhooks/github", data=body, headers=jira_headers(body, "x"))
    assert resp.status == 404
    assert await queued(redis) == 0


async def test_standard_webhooks_rotation_staleness_and_dedupe(
    client: TestClient[Any, Any], redis: Redis
) -> None:
    payload = {"data": {"servicePrincipalId": "cbe29441-8636-4563-a4a8-c390c0e83cb4"}}
    body = json.dumps(payload).encode()
    # Signed with the old secret only (still listed): accepted.
    resp = await client.post(
        "/v1/webhooks/standard", data=body, headers=standard_headers(body, "msg_1", [OLD_STANDARD])
    )
    assert resp.status == 202, await resp.text()
    first = (await resp.json())["id"]
    # Both signatures, same id: a redelivery.
    resp = await client.post(
        "/v1/webhooks/standard",
        data=body,
        headers=standard_headers(body, "msg_1", [NEW_STANDARD, OLD_STANDARD]),
    )
    assert resp.status == 202
    assert (await resp.json())["id"] == first
    assert await queued(redis) == 1
    # Stale (6 minutes) and future timestamps: 401.
    for offset in (-360, 360):
        headers = standard_headers(body, "msg_2", [NEW_STANDARD], int(time.time()) + offset)
        resp = await client.post("/v1/webhooks/standard", data=body, headers=headers)
        assert resp.status == 401
    # Unknown secret: 401.
    wrong = "whsec_" + base64.b64encode(b"x" * 32).decode()
    resp = await client.post(
        "/v1/webhooks/standard", data=body, headers=standard_headers(body, "msg_3", [wrong])
    )
    assert resp.status == 401
    assert await queued(redis) == 1


async def test_servicenow_bearer_and_signature(client: TestClient[Any, Any], redis: Redis) -> None:
    payload = json.loads((EXAMPLES / "servicenow-catalog-request.json").read_text())
    body = json.dumps(payload).encode()
    json_ct = {"Content-Type": "application/json"}
    # An API key of a caller that is not in bearer_callers: 401.
    resp = await client.post(
        "/v1/webhooks/servicenow",
        data=body,
        headers={**json_ct, "Authorization": f"Bearer {API_KEY}"},
    )
    assert resp.status == 401
    # No credentials at all: 401.
    resp = await client.post("/v1/webhooks/servicenow", data=body, headers=json_ct)
    assert resp.status == 401
    # The servicenow API key: 202, recorded as webhook:servicenow, deduplicated by sys_id.
    auth = {**json_ct, "Authorization": f"Bearer {SN_KEY}"}
    resp = await client.post("/v1/webhooks/servicenow", data=body, headers=auth)
    assert resp.status == 202, await resp.text()
    record = await resp.json()
    assert record["caller"] == "webhook:servicenow"
    assert record["externalReference"] == "3a9f1c2e1b7d2110a4c5e8f2604bcb11"  # its sys_id
    assert record["templateId"] == "scimV2"
    assert record["hasCredentials"] is False
    resp = await client.post("/v1/webhooks/servicenow", data=body, headers=auth)
    assert (resp.status, (await resp.json())["id"]) == (202, record["id"])
    # The script include's signature (Standard Webhooks headers) for another item.
    payload["sys_id"] = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    payload["variables"]["service_principal_id"] = "01d564d9-8163-464e-bc90-b017bf5c8fa6"
    body2 = json.dumps(payload).encode()
    headers = standard_headers(body2, payload["sys_id"], [SN_SECRET])
    resp = await client.post("/v1/webhooks/servicenow", data=body2, headers=headers)
    assert resp.status == 202, await resp.text()
    headers["webhook-signature"] = signing.sign(SN_SECRET, payload["sys_id"], 1, body2)
    resp = await client.post("/v1/webhooks/servicenow", data=body2, headers=headers)
    assert resp.status == 401
    assert await queued(redis) == 2


async def test_payload_that_does_not_map_is_422(client: TestClient[Any, Any], redis: Redis) -> None:
    body = jira_payload(sp="not-a-guid")
    resp = await client.post("/v1/webhooks/jira", data=body, headers=jira_headers(body, "d-9"))
    assert resp.status == 422
    problem = await resp.json(content_type=None)
    assert problem["errors"][0]["field"] == "servicePrincipalId"
    body = b"{not json"
    resp = await client.post("/v1/webhooks/jira", data=body, headers=jira_headers(body, "d-10"))
    assert resp.status == 400
    data = json.loads(jira_payload())
    data["issue"]["fields"]["customfield_10052"]["value"] = "no-such-set"
    body = json.dumps(data).encode()
    resp = await client.post("/v1/webhooks/jira", data=body, headers=jira_headers(body, "d-11"))
    assert resp.status == 422
    assert await queued(redis) == 0


async def test_policy_forbids_webhook_caller(
    redis: Redis, redis_url: str, tmp_path: Path, secrets_env: None
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        yaml.safe_dump(
            {
                "callers": {
                    "webhook:jira": {
                        "permissions": ["write"],
                        "service_principals": ["cbe29441-8636-4563-a4a8-c390c0e83cb4"],
                    }
                }
            }
        )
    )
    settings = make_settings(
        redis_url, webhooks_file=webhooks_file(tmp_path), access_policy_file=policy
    )
    async with api_client(settings) as c:
        body = jira_payload()  # Salesforce: not allowed for webhook:jira
        resp = await c.post("/v1/webhooks/jira", data=body, headers=jira_headers(body, "p-1"))
        assert resp.status == 403
        body = json.dumps({"data": {"servicePrincipalId": "cbe29441-8636-4563-a4a8-c390c0e83cb4"}})
        headers = standard_headers(body.encode(), "p-2", [NEW_STANDARD])
        resp = await c.post("/v1/webhooks/standard", data=body, headers=headers)
        assert resp.status == 403  # webhook:standard is not listed: no rights
        assert await queued(redis) == 0
        # The other API key holder is not listed either.
        resp = await c.get(
            "/v1/provisioning-requests", headers={"Authorization": f"Bearer {OTHER_KEY}"}
        )
        assert resp.status == 403


def test_shipped_examples_map(secrets_env: None) -> None:
    sources = load_webhook_sources(EXAMPLES / "webhooks.yaml")
    jira = json.loads((EXAMPLES / "jira-issue-created.json").read_text())
    mapped = map_payload(sources.sources["jira"], jira, sources)
    body = mapped.body
    assert body["servicePrincipalId"] == "15331f0e-bdc6-41e2-afa0-a4c9abfe90b3"
    assert body["templateId"] == "salesforce"
    assert body["externalReference"] == "IAM-1042"
    assert {c["key"] for c in body["credentials"]} == {"ClientSecret", "SecretToken"}
    request = ProvisionRequest.model_validate(body)
    assert delivery_errors(sources.sources["jira"], mapped, request) == []  # bound, a Jira key
    sn = json.loads((EXAMPLES / "servicenow-catalog-request.json").read_text())
    mapped = map_payload(sources.sources["servicenow"], sn, sources)
    body, delivery = mapped.body, mapped.delivery
    request = ProvisionRequest.model_validate(body)
    assert delivery_errors(sources.sources["servicenow"], mapped, request) == []
    assert body == {
        "servicePrincipalId": "cbe29441-8636-4563-a4a8-c390c0e83cb4",
        "templateId": "scimV2",
        "externalReference": "3a9f1c2e1b7d2110a4c5e8f2604bcb11",
    }
    assert delivery == "3a9f1c2e1b7d2110a4c5e8f2604bcb11"
    assert SF_SECRET not in repr(sources)


def test_missing_secret_env_names_the_variable(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JIRA_WEBHOOK_SECRET", raising=False)
    settings = make_settings(redis_url, webhooks_file=EXAMPLES / "webhooks.yaml")
    with pytest.raises(ConfigError) as info:
        create_app(settings)  # features parse their own files at start-up
    message = str(info.value)
    assert message.startswith("PROVISIONER_WEBHOOKS_FILE: ")
    assert "JIRA_WEBHOOK_SECRET" in message
    assert "\n" not in message
