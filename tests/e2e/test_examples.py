"""The shipped examples run end to end: docs/examples/webhooks.yaml and access-policy.yaml as
the API's configuration, each example delivery signed and posted (the Jira and ServiceNow
payload files, and a delivery for the example's ``standard`` source, which ships no payload
file), each request followed to ``succeeded`` by an operator's key (separate processes: API,
worker, sandbox, Redis)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.fernet import Fernet

from service.core import signing
from service.core.config_values import hash_api_key
from tests.helpers.redis_server import RedisServer
from tests.helpers.sandbox import SandboxProcess
from tests.helpers.stack import api_and_worker

pytestmark = pytest.mark.e2e
EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
JIRA_SECRET = "jira-example-webhook-secret-0123"
SERVICENOW_SECRET = "whsec_" + "c2VydmljZW5vdy1leGFtcGxlLXNlY3JldC0wMTIz"
STANDARD_SECRET = "whsec_" + "c3RhbmRhcmQtZXhhbXBsZS1zZWNyZXQtMDEyMzQ1"
SUPPORT_KEY = "pk_support-operator-key-0123456789"
CLIENT_SECRET = "salesforce-example-client-secret-42"
SECRET_TOKEN = "salesforce-example-secret-token-42"


def jira_delivery() -> tuple[bytes, dict[str, str]]:
    payload = json.loads((EXAMPLES / "jira-issue-created.json").read_text())
    payload["timestamp"] = int(time.time() * 1000)  # the example as Jira would send it now
    body = json.dumps(payload).encode()
    signature = hmac.new(JIRA_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, {
        "Content-Type": "application/json",
        "X-Hub-Signature": f"sha256={signature}",
        "X-Atlassian-Webhook-Identifier": "example-jira-1",
    }


def servicenow_delivery() -> tuple[bytes, dict[str, str]]:
    body = (EXAMPLES / "servicenow-catalog-request.json").read_bytes()
    ts = int(time.time())
    return body, {
        "Content-Type": "application/json",
        "webhook-id": "example-servicenow-1",
        "webhook-timestamp": str(ts),
        "webhook-signature": signing.sign(SERVICENOW_SECRET, "example-servicenow-1", ts, body),
    }


def standard_delivery() -> tuple[bytes, dict[str, str]]:
    """What a Standard Webhooks sender posts for the example's ``standard`` mapping."""
    data = {"servicePrincipalId": "cbe29441-8636-4563-a4a8-c390c0e83cb4", "templateId": "scim"}
    body = json.dumps({"type": "provisioning.requested", "data": {**data, "ticket": "CHG-7"}})
    ts = int(time.time())
    return body.encode(), {
        "Content-Type": "application/json",
        "webhook-id": "example-standard-1",
        "webhook-timestamp": str(ts),
        "webhook-signature": signing.sign(STANDARD_SECRET, "example-standard-1", ts, body.encode()),
    }


async def follow(session: aiohttp.ClientSession, url: str, timeout_s: float = 60) -> Any:
    """The record once it has ended (the state change is the event awaited)."""
    headers = {"Authorization": f"Bearer {SUPPORT_KEY}"}
    deadline = time.monotonic() + timeout_s
    while True:
        async with session.get(url, headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            record = await resp.json()
        if record["state"] in {"succeeded", "failed", "cancelled"}:
            return record
        assert time.monotonic() < deadline, record
        await asyncio.sleep(0.2)


async def test_shipped_webhook_examples_run_end_to_end(
    tmp_path: Path, fresh_sandbox: SandboxProcess
) -> None:
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    env = {
        **fresh_sandbox.env(),
        "PROVISIONER_REDIS_URL": redis.url,
        "PROVISIONER_API_KEYS": f"support:{hash_api_key(SUPPORT_KEY)}",
        "PROVISIONER_WEBHOOKS_FILE": str(EXAMPLES / "webhooks.yaml"),
        "PROVISIONER_ACCESS_POLICY_FILE": str(EXAMPLES / "access-policy.yaml"),
        "PROVISIONER_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "JIRA_WEBHOOK_SECRET": JIRA_SECRET,
        "SERVICENOW_WEBHOOK_SECRET": SERVICENOW_SECRET,
        "STANDARD_WEBHOOK_SECRET": STANDARD_SECRET,
        "SALESFORCE_PROD_CLIENT_SECRET": CLIENT_SECRET,
        "SALESFORCE_PROD_SECRET_TOKEN": SECRET_TOKEN,
        "PROVISIONER_VERIFY_SETTLE_S": "1",
    }
    ended: dict[str, Any] = {}
    async with api_and_worker(env, tmp_path, redis) as base, aiohttp.ClientSession() as session:
        for source, (body, headers) in {
            "jira": jira_delivery(),
            "servicenow": servicenow_delivery(),
            "standard": standard_delivery(),
        }.items():
            async with session.post(
                f"{base}/v1/webhooks/{source}", data=body, headers=headers
            ) as resp:
                assert resp.status == 202, (source, await resp.text())
                location = resp.headers["Location"]
            ended[source] = await follow(session, base + location)
        # The operator sees both ticket requests in its list, and one source's alone.
        auth = {"Authorization": f"Bearer {SUPPORT_KEY}"}
        async with session.get(f"{base}/v1/provisioning-requests", headers=auth) as resp:
            listed = {r["caller"] for r in (await resp.json())["items"]}
        async with session.get(
            f"{base}/v1/provisioning-requests", params={"caller": "webhook:jira"}, headers=auth
        ) as resp:
            jira_only = [r["caller"] for r in (await resp.json())["items"]]
    for source, record in ended.items():
        assert record["state"] == "succeeded", (source, record["error"])
        assert record["caller"] == f"webhook:{source}"
    assert ended["jira"]["hasCredentials"] is True
    assert ended["jira"]["externalReference"] == "IAM-1042"
    assert ended["servicenow"]["templateId"] == "scimV2"
    assert ended["standard"]["externalReference"] == "CHG-7"
    assert ended["standard"]["templateId"] == "scim"
    assert listed == {"webhook:jira", "webhook:servicenow", "webhook:standard"}
    assert jira_only == ["webhook:jira"]
    # The credential set reached Graph under Graph's own key names.
    stats = fresh_sandbox.stats()
    [job] = stats["jobs"]["15331f0e-bdc6-41e2-afa0-a4c9abfe90b3"]
    assert stats["starts"][job["id"]] == 1
