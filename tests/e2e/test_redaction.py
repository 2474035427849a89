"""Log redaction, enforced: the whole flow as separate processes (Redis, the sandbox, the API and
a worker, all at DEBUG), exercised with every kind of secret (the app's client secret, app
credentials, API keys, an Entra access token, webhook secrets and the credential-set values they
reference, the encryption key), then every process's log is searched for each secret value.

The sandbox prints its own seeded client secret in its start-up banner on purpose (it is the
tenant stand-in, ``docs/sandbox.md``); that one banner line is the only exception.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from service.core.config_values import hash_api_key
from service.core.crypto import new_encryption_key
from tests.helpers.processes import Child, start_api, start_worker
from tests.helpers.redis_server import RedisServer
from tests.helpers.sandbox import SandboxProcess, start_sandbox

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
TENANT = "4b6e1d2c-8a3f-4e5d-9c0b-7a6f5e4d3c2b"
WORKER_APP = "5c7d9e1f-2a3b-4c5d-8e9f-0a1b2c3d4e5f"
WORKER_SECRET = "worker-client-secret-Xq81LmZ"
PORTAL_APP = "6d8e0f2a-3b4c-4d5e-9f0a-1b2c3d4e5f60"
PORTAL_SECRET = "portal-client-secret-Vb27NwQ"
API_KEY = "pk_redaction-api-key-Hs84Jd92"
WRONG_KEY = "pk_wrong-key-tried-by-an-attacker-Pq12"
CREDENTIAL = "app-credential-value-Zx90Kc31"
JIRA_SECRET = "jira-webhook-secret-Lm55Tr07"
SN_SECRET = "whsec_" + base64.b64encode(b"servicenow-webhook-secret-Aa1").decode()
STD_SECRET = "whsec_" + base64.b64encode(b"standard-webhook-secret-Bb22Cc").decode()
SF_SECRET = "salesforce-set-secret-Qw73Er19"
SF_TOKEN = "salesforce-set-token-Ty46Ui28"
SEED = {
    "tenantId": TENANT,
    "applications": [
        {
            "clientId": WORKER_APP,
            "clientSecret": WORKER_SECRET,
            "roles": ["Synchronization.ReadWrite.All"],
        },
        {
            "clientId": PORTAL_APP,
            "clientSecret": PORTAL_SECRET,
            "roles": ["Provisioning.ReadWrite.All"],
        },
    ],
    "servicePrincipals": [],
    "generate": {"count": 3, "templates": [{"id": "salesforce", "default": True}]},
}


class Stack:
    def __init__(
        self, sandbox: SandboxProcess, api: Child, base: str, worker: Child, redis: RedisServer
    ) -> None:
        self.sandbox, self.api, self.base, self.worker, self.redis = (
            sandbox,
            api,
            base,
            worker,
            redis,
        )


def _webhooks_file(tmp_path: Path, sandbox: SandboxProcess) -> Path:
    """The shipped example, its credential set bound to the generated app the Jira ticket names."""
    conf = yaml.safe_load((EXAMPLES / "webhooks.yaml").read_text())
    bound = conf["credential_sets"]["salesforce-prod"]
    bound["service_principals"] = [sandbox.principals()[2]["id"]]
    path = tmp_path / "webhooks.yaml"
    path.write_text(yaml.safe_dump(conf))
    return path


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    sandbox = start_sandbox(tmp_path / "sandbox", seed=SEED, faults={"activation_delay_ms": 50})
    encryption_key = new_encryption_key()
    env = {
        **sandbox.env(),
        "PROVISIONER_REDIS_URL": redis.url,
        "PROVISIONER_API_KEYS": f"portal-key:{hash_api_key(API_KEY)}",
        "PROVISIONER_ENCRYPTION_KEY": encryption_key,
        "PROVISIONER_QUEUE_NAME": "redaction",
        "PROVISIONER_ENTRA_AUDIENCE": "api://provisioner",
        "PROVISIONER_WEBHOOKS_FILE": str(_webhooks_file(tmp_path, sandbox)),
        "JIRA_WEBHOOK_SECRET": JIRA_SECRET,
        "SERVICENOW_WEBHOOK_SECRET": SN_SECRET,
        "STANDARD_WEBHOOK_SECRET": STD_SECRET,
        "SALESFORCE_PROD_CLIENT_SECRET": SF_SECRET,
        "SALESFORCE_PROD_SECRET_TOKEN": SF_TOKEN,
        "PROVISIONER_VERIFY_POLL_S": "0.2",
        "PROVISIONER_VERIFY_SETTLE_S": "0.5",
        "PROVISIONER_LOG_LEVEL": "DEBUG",
        "PROVISIONER_LOG_FORMAT": "json",
    }
    assert env["PROVISIONER_CLIENT_SECRET"] == WORKER_SECRET
    api, base = start_api(env, tmp_path)
    worker = start_worker(env, tmp_path)
    stack = Stack(sandbox, api, base, worker, redis)
    stack.secrets = [  # type: ignore[attr-defined]
        WORKER_SECRET,
        PORTAL_SECRET,
        API_KEY,
        WRONG_KEY,
        CREDENTIAL,
        JIRA_SECRET,
        SN_SECRET,
        SN_SECRET.removeprefix("whsec_"),
        STD_SECRET.removeprefix("whsec_"),
        SF_SECRET,
        SF_TOKEN,
        encryption_key,
    ]
    try:
        yield stack
    finally:
        worker.stop()
        api.stop()
        sandbox.stop()
        redis.stop()


async def _portal_token(stack: Stack, session: aiohttp.ClientSession) -> str:
    form = {
        "grant_type": "client_credentials",
        "client_id": PORTAL_APP,
        "client_secret": PORTAL_SECRET,
        "scope": "api://provisioner/.default",
    }
    url = f"{stack.sandbox.base_url}/{TENANT}/oauth2/v2.0/token"
    async with session.post(url, data=form, ssl=stack.sandbox.ssl_context()) as resp:
        return str((await resp.json())["access_token"])


async def _wait(
    session: aiohttp.ClientSession, base: str, ids: dict[str, dict[str, str]], timeout_s: float
) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    done: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline and len(done) < len(ids):
        for rid, headers in ids.items():
            async with session.get(f"{base}/v1/provisioning-requests/{rid}", headers=headers) as r:
                record = await r.json()
            if record.get("state") in {"succeeded", "failed", "cancelled"}:
                done[rid] = record
        await asyncio.sleep(0.3)
    return done


def _sandbox_output(stack: Stack) -> str:
    proc = stack.sandbox.proc
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    lines = (out + err).decode(errors="replace").splitlines()
    # The banner's deliberate line (the sandbox's own seeded test credential).
    return "\n".join(line for line in lines if not line.startswith("client_secret: "))


async def test_no_secret_appears_in_any_log(stack: Stack) -> None:
    principals = [p["id"] for p in stack.sandbox.principals()]
    key_auth = {"Authorization": f"Bearer {API_KEY}"}
    ids: dict[str, dict[str, str]] = {}
    async with aiohttp.ClientSession() as session:
        # 1. An API-key caller with credentials.
        body = {
            "servicePrincipalId": principals[0],
            "credentials": [{"key": "SecretToken", "value": CREDENTIAL}],
        }
        async with session.post(
            f"{stack.base}/v1/provisioning-requests", json=body, headers=key_auth
        ) as resp:
            assert resp.status == 202, await resp.text()
            ids[(await resp.json())["id"]] = key_auth
        # 2. An Entra token caller.
        access_token = await _portal_token(stack, session)
        token_auth = {"Authorization": f"Bearer {access_token}"}
        stack.secrets += [access_token, access_token.rsplit(".", 1)[1]]  # type: ignore[attr-defined]
        async with session.post(
            f"{stack.base}/v1/provisioning-requests",
            json={"servicePrincipalId": principals[1]},
            headers=token_auth,
        ) as resp:
            assert resp.status == 202, await resp.text()
            ids[(await resp.json())["id"]] = token_auth
        # 3. A signed Jira webhook whose ticket names a credential set, and a forged one.
        issue = json.loads((EXAMPLES / "jira-issue-created.json").read_text())
        issue["issue"]["fields"]["customfield_10050"] = principals[2]
        issue["timestamp"] = int(time.time() * 1000)  # fresh: Jira's body stamp is checked
        raw = json.dumps(issue).encode()
        digest = hmac.new(JIRA_SECRET.encode(), raw, hashlib.sha256).hexdigest()
        hook_headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature": f"sha256={digest}",
            "X-Atlassian-Webhook-Identifier": "delivery-1",
        }
        async with session.post(
            f"{stack.base}/v1/webhooks/jira", data=raw, headers=hook_headers
        ) as resp:
            assert resp.status == 202, await resp.text()
            webhook_record = await resp.json()
        assert webhook_record["hasCredentials"] is True
        forged = {**hook_headers, "X-Hub-Signature": "sha256=" + "ab" * 32}
        async with session.post(f"{stack.base}/v1/webhooks/jira", data=raw, headers=forged) as r:
            assert r.status == 401
        # 4. An attacker's wrong key.
        async with session.get(
            f"{stack.base}/v1/provisioning-requests",
            headers={"Authorization": f"Bearer {WRONG_KEY}"},
        ) as resp:
            assert resp.status == 401
        done = await _wait(session, stack.base, ids, timeout_s=60)
    assert len(done) == len(ids), done
    assert {r["state"] for r in done.values()} == {"succeeded"}, done
    first = done[next(iter(ids))]
    assert any(
        h["step"] == "save_secrets" and h["outcome"] == "succeeded" for h in first["history"]
    )

    stack.worker.stop()
    stack.api.stop()
    logs = {
        "api": stack.api.log(),
        "worker": stack.worker.log(),
        "sandbox": _sandbox_output(stack),
        "redis": (stack.redis.workdir / "redis.log").read_text(errors="replace"),
    }
    assert "http_request" in logs["api"]
    assert "webhook_rejected" in logs["api"]
    assert "save_secrets" in logs["worker"]
    for name, text in logs.items():
        for secret in stack.secrets:  # type: ignore[attr-defined]
            assert secret not in text, f"a secret ({len(secret)} chars) leaked into the {name} log"
