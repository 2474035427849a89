"""A Jira ticket end to end: a signed issue-created webhook starts provisioning, and when the
request ends the issue gets a comment (separate processes: API, worker, sandbox, fake Jira)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp import web

from service.core.config_values import hash_api_key
from tests.helpers.local_server import serving
from tests.helpers.redis_server import RedisServer
from tests.helpers.sandbox import SandboxProcess
from tests.helpers.stack import api_and_worker

pytestmark = pytest.mark.e2e
EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
WEBHOOK_SECRET = "jira-webhook-secret-for-e2e-0123"
JIRA_TOKEN = "jira-api-token-for-e2e-4567"
KEY = "pk_ticket-flow-reader-key-89abcdef"


@pytest.fixture
async def fake_jira(tmp_path: Path) -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A Jira over HTTPS (its CA in ``jira-ca.pem``) recording its comments: (base URL, them)."""
    comments: list[dict[str, Any]] = []

    async def comment(request: web.Request) -> web.Response:
        comments.append({"path": request.path, "body": await request.json()})
        return web.json_response({"id": "1"}, status=201)

    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    (tmp_path / "jira-ca.pem").write_bytes(ca.cert_pem.bytes())
    jira = web.Application()
    jira.router.add_post("/rest/api/3/issue/{key}/comment", comment)
    async with serving(jira, ctx) as base:
        yield base, comments


async def test_jira_issue_to_started_job_to_comment(
    tmp_path: Path,
    fresh_sandbox: SandboxProcess,
    fake_jira: tuple[str, list[dict[str, Any]]],
) -> None:
    jira_url, comments = fake_jira

    webhooks = tmp_path / "webhooks.yaml"
    webhooks.write_text(
        "sources:\n  jira:\n    kind: jira\n    secret_env: [E2E_JIRA_WEBHOOK_SECRET]\n"
        "    mapping:\n      servicePrincipalId: /issue/fields/customfield_10050\n"
        "      templateId: /issue/fields/customfield_10051/value\n"
        "      externalReference: /issue/key\n"
    )
    writeback = tmp_path / "writeback.yaml"
    writeback.write_text(
        f"jira:\n  base_url: {jira_url}\n  email: bot@example.com\n"
        "  api_token_env: E2E_JIRA_API_TOKEN\n"
    )
    bundle = tmp_path / "bundle.pem"  # trust the sandbox and the fake Jira
    bundle.write_text(
        Path(fresh_sandbox.ca_path).read_text() + (tmp_path / "jira-ca.pem").read_text()
    )
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    env = {
        **fresh_sandbox.env(),
        "PROVISIONER_CA_BUNDLE": str(bundle),
        "PROVISIONER_REDIS_URL": redis.url,
        "PROVISIONER_API_KEYS": f"reader:{hash_api_key(KEY)}",
        "PROVISIONER_WEBHOOKS_FILE": str(webhooks),
        "PROVISIONER_WRITEBACK_FILE": str(writeback),
        "E2E_JIRA_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "E2E_JIRA_API_TOKEN": JIRA_TOKEN,
        "PROVISIONER_VERIFY_SETTLE_S": "1",
    }
    async with api_and_worker(env, tmp_path, redis) as base:
        issue = json.loads((EXAMPLES / "jira-issue-created.json").read_text())
        issue["timestamp"] = int(time.time() * 1000)  # Jira's own epoch-ms stamp: fresh
        body = json.dumps(issue).encode()
        issue_key = issue["issue"]["key"]
        signature = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature": f"sha256={signature}",
            "X-Atlassian-Webhook-Identifier": "e2e-delivery-1",
        }
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{base}/v1/webhooks/jira", data=body, headers=headers) as r:
                assert r.status == 202, await r.text()
                request_id = (await r.json())["id"]
            headers["X-Atlassian-Webhook-Identifier"] = "e2e-delivery-2"  # unsigned: ignored
            async with session.post(f"{base}/v1/webhooks/jira", data=body, headers=headers) as r:
                assert (await r.json())["id"] == request_id  # a replay, nothing new
            for _ in range(150):
                if comments:
                    break
                await asyncio.sleep(0.2)
    [posted] = comments
    assert posted["path"] == f"/rest/api/3/issue/{issue_key}/comment"
    text = " ".join(c["text"] for p in posted["body"]["body"]["content"] for c in p["content"])
    assert request_id in text
    assert "succeeded" in text
    stats = fresh_sandbox.stats()
    [job] = stats["jobs"]["15331f0e-bdc6-41e2-afa0-a4c9abfe90b3"]
    assert stats["starts"][job["id"]] == 1
