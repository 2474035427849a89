"""The health watch end to end, as separate processes (Redis, the sandbox, the API, a worker)
and a callback receiver: a request succeeds, an admin then breaks the job's credentials so the
sandbox quarantines it, and the watch notices within its (short) schedule: the application view
says ``quarantined``, the receiver gets a signed ``application.health_changed``, the metrics
count it. Prints the time to detect and the Graph calls the watch made per watched job."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
import trustme
from aiohttp import web

from service.core import signing
from service.core.config_values import hash_api_key
from service.core.crypto import new_encryption_key
from tests.helpers.local_server import serving
from tests.helpers.processes import start_api, start_worker
from tests.helpers.redis_server import RedisServer
from tests.helpers.sandbox import SandboxProcess
from tests.helpers.tenant_admin import TenantAdmin

pytestmark = pytest.mark.e2e
T = TypeVar("T")
API_KEY = "pk_health-watch-e2e-key-0123456789"
CALLBACK_SECRET = "whsec_" + base64.b64encode(b"health-watch-callback-secret-0123").decode()
SALESFORCE = "15331f0e-bdc6-41e2-afa0-a4c9abfe90b3"
SCHEDULE = (2, 3, 5)
TICK_S = 1
#: What a loaded machine may add to a check's due time (a tick that runs late, a slow read):
#: still far below the default schedule's delays, which a watch ignoring this one would use.
SLACK_S = 5


class Receiver:
    def __init__(self) -> None:
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        self.arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.deliveries.append((dict(request.headers), await request.read()))
        self.arrived.set()
        return web.Response(status=204)

    def events(self, kind: str) -> list[tuple[dict[str, str], bytes, dict[str, Any]]]:
        found = [(h, b, json.loads(b)) for h, b in self.deliveries]
        return [item for item in found if item[2]["type"] == kind]


@pytest.fixture
async def receiver(tmp_path: Path) -> AsyncIterator[tuple[Receiver, str, Path]]:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    recv = Receiver()
    app = web.Application()
    app.router.add_post("/hook", recv.handle)
    ca_file = tmp_path / "receiver-ca.pem"
    ca_file.write_bytes(ca.cert_pem.bytes())
    async with serving(app, server_ctx) as base:
        yield recv, f"{base}/hook", ca_file


async def until(probe: Callable[[], Awaitable[T | None]], timeout_s: float) -> T:
    """Poll ``probe`` (each poll is one HTTP read) until it returns something."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {timeout_s}s"
        await asyncio.sleep(0.1)


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_a_quarantine_after_success_is_detected_told_and_counted(
    tmp_path: Path, fresh_sandbox: SandboxProcess, receiver: tuple[Receiver, str, Path]
) -> None:
    recv, hook_url, ca_file = receiver
    bundle = tmp_path / "bundle.pem"
    bundle.write_text(Path(fresh_sandbox.ca_path).read_text() + ca_file.read_text())
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    env = {
        **fresh_sandbox.env(),
        "PROVISIONER_CA_BUNDLE": str(bundle),
        "PROVISIONER_REDIS_URL": redis.url,
        "PROVISIONER_API_KEYS": f"e2e:{hash_api_key(API_KEY)}",
        "PROVISIONER_ENCRYPTION_KEY": new_encryption_key(),
        "PROVISIONER_CALLBACK_SECRETS": f"e2e:{CALLBACK_SECRET}",
        "PROVISIONER_CALLBACK_ALLOWLIST": "127.0.0.0/8",
        "PROVISIONER_VERIFY_SETTLE_S": "1",
        "PROVISIONER_VERIFY_POLL_S": "0.2",
        "PROVISIONER_WATCH_SCHEDULE": ",".join(map(str, SCHEDULE)),
        "PROVISIONER_WATCH_INTERVAL_S": str(TICK_S),
        # 3 call slots a tick: the job's GET and two for its provisioning logs' pages
        "PROVISIONER_WATCH_MAX_CALLS_PER_S": "3",
        "PROVISIONER_LOG_FORMAT": "json",
    }
    api, base = await asyncio.to_thread(start_api, env, tmp_path)
    worker = start_worker(env, tmp_path)
    admin = TenantAdmin(fresh_sandbox)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    try:
        async with aiohttp.ClientSession(headers=headers) as session:

            async def read(path: str) -> Any:
                async with session.get(f"{base}{path}") as resp:
                    return await resp.json(content_type=None) if resp.status == 200 else None

            sync_all = {"value": [{"key": "SyncAll", "value": "true"}]}  # 25 users in scope
            secrets = f"/servicePrincipals/{SALESFORCE}/synchronization/secrets"
            assert await admin.call("PUT", secrets, sync_all) == 204
            body = {"servicePrincipalId": SALESFORCE, "callbackUrl": hook_url}
            async with session.post(f"{base}/v1/provisioning-requests", json=body) as resp:
                assert resp.status == 202, await resp.text()
                request_id = (await resp.json())["id"]

            async def ended() -> Any:
                record = await read(f"/v1/provisioning-requests/{request_id}")
                return record if record and record["state"] in {"succeeded", "failed"} else None

            record = await until(ended, 60)
            assert record["state"] == "succeeded", record["error"]
            job_id = record["jobId"]
            ended_at = datetime.fromisoformat(record["updatedAt"])

            async def checked() -> Any:
                app = await read(f"/v1/applications/{SALESFORCE}")
                return app if app and app["jobs"][0]["checkedAt"] else None

            app = await until(checked, 60)
            first_check_s = datetime.fromisoformat(app["jobs"][0]["checkedAt"]) - ended_at
            assert first_check_s.total_seconds() <= SCHEDULE[0] + TICK_S + SLACK_S
            assert app["jobs"][0]["health"] == "healthy"
            assert [r["id"] for r in app["requests"]] == [request_id]

            async def cycle_read() -> Any:  # the worker's tick read the first cycle's logs
                app = await read(f"/v1/applications/{SALESFORCE}")
                return app["jobs"][0]["lastCycle"] if app and app["jobs"][0]["lastCycle"] else None

            cycle = await until(cycle_read, 30)
            assert (cycle["succeeded"], cycle["failed"], cycle["skipped"]) == (25, 0, 0)
            assert (cycle["truncated"], cycle["unavailable"]) == (False, None)

            metrics_url = f"http://127.0.0.1:{worker.metrics_port}/metrics"

            async def worker_metrics() -> str:
                async with aiohttp.ClientSession() as plain, plain.get(metrics_url) as resp:
                    return await resp.text()

            checks_before = _metric(await worker_metrics(), "provisioner_watch_checks_total")
            gets_before = fresh_sandbox.stats()["calls"]["jobs.get"].get("200", 0)
            broken = time.monotonic()
            await admin.break_credentials(SALESFORCE, job_id)

            async def quarantined() -> Any:
                app = await read(f"/v1/applications/{SALESFORCE}")
                return app if app and app["jobs"][0]["health"] == "quarantined" else None

            app = await until(quarantined, 30)
            detect_s = time.monotonic() - broken
            job = app["jobs"][0]
            assert job["quarantine"]["reason"] == "EncounteredQuarantineException"
            assert job["quarantine"]["error"]["code"] == "SandboxInvalidCredentials"
            assert job["history"][-1]["to"] == "quarantined"
            # within the schedule: at most its longest delay and a tick after the change
            assert detect_s <= max(SCHEDULE) + TICK_S + SLACK_S

            async def told() -> Any:
                events = recv.events("application.health_changed")
                return [e for e in events if e[2]["data"]["health"] == "quarantined"]

            [(hook_headers, raw, event)] = await until(told, 30)
            msg_id, ts = hook_headers["webhook-id"], int(hook_headers["webhook-timestamp"])
            assert signing.verify(
                [CALLBACK_SECRET], msg_id, ts, raw, hook_headers["webhook-signature"]
            )
            assert event["data"]["servicePrincipalId"] == SALESFORCE
            assert event["data"]["jobId"] == job_id
            assert event["data"]["requestId"] == request_id
            assert "EncounteredQuarantineException" in event["data"]["reason"]
            assert len(recv.events("provisioning_request.succeeded")) == 1

            listed = await read("/v1/applications?health=quarantined")
            assert [a["servicePrincipalId"] for a in listed["items"]] == [SALESFORCE]
            async with session.get(f"{base}/metrics") as resp:
                api_metrics = await resp.text()
            assert _metric(api_metrics, "provisioner_applications", health="quarantined") == 1
            worker_text = await worker_metrics()
            changes = _metric(worker_text, "provisioner_application_health_changes_total",
                              to_health="quarantined")  # fmt: skip
            assert changes == 1
            checks = _metric(worker_text, "provisioner_watch_checks_total") - checks_before
            watch_gets = fresh_sandbox.stats()["calls"]["jobs.get"].get("200", 0) - gets_before
    finally:
        worker.stop()
        api.stop()
        redis.stop()
    summary = {
        "first_check_after_end_s": round(first_check_s.total_seconds(), 2),
        "time_to_detect_quarantine_s": round(detect_s, 2),
        "watch_checks_after_break": checks,
        "graph_gets_after_break": watch_gets,
        "graph_gets_per_check": round(watch_gets / max(checks, 1), 2),
        "schedule_s": SCHEDULE,
    }
    print("\nHEALTH WATCH E2E " + json.dumps(summary))
