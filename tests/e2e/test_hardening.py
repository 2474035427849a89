"""Hardening from the security review, against the real processes (``provisioner api`` and
``provisioner worker``, a real Redis, the sandbox over HTTPS, a callback receiver over HTTPS):

- an over-long or malformed header line (an ``Authorization`` prefix) is answered 431/400
  problem+json without echoing it, and its bytes stay out of the log (raw socket);
- one caller's failing callbacks do not count against the intake queue cap;
- a run leaves no generated CA file in the temp directory;
- the API warns at start-up about callers without a callback secret;
- an http:// write-back address stops the worker at start-up.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp import web
from redis.asyncio import Redis

from service.core.config_values import hash_api_key
from tests.helpers.local_server import serving
from tests.helpers.processes import Child, cli, start_api, start_worker
from tests.helpers.redis_server import RedisServer, free_port
from tests.helpers.sandbox import SandboxProcess

pytestmark = pytest.mark.e2e

API_KEY = "pk_hardening-api-key-Re81Xc"
LEAKED_TOKEN = "eyJleaked-bearer-prefix-Hq47Ln"  # what an over-long header starts with
CALLBACK_SECRET = "whsec_" + base64.b64encode(b"hardening-callback-secret-0123").decode()
GITHUB = "01d564d9-8163-464e-bc90-b017bf5c8fa6"  # two templates, none default: fails fast
SALESFORCE = "15331f0e-bdc6-41e2-afa0-a4c9abfe90b3"
SCIM = "cbe29441-8636-4563-a4a8-c390c0e83cb4"


def _raw_request(port: int, request: bytes) -> bytes:
    """Send bytes on a plain socket and read the answer until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture
def redis_proc(tmp_path: Path) -> Any:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


async def test_unparseable_header_lines_are_not_echoed_or_logged(
    tmp_path: Path, redis_proc: RedisServer
) -> None:
    env = {"PROVISIONER_REDIS_URL": redis_proc.url, "PROVISIONER_LOG_LEVEL": "DEBUG"}
    api, base = await asyncio.to_thread(start_api, env, tmp_path)
    port = int(base.rsplit(":", 1)[1])
    attacks = {
        "too-long": b"Authorization: Bearer " + LEAKED_TOKEN.encode() + b"A" * 9000,
        "nul-byte": b"Authorization: Bearer " + LEAKED_TOKEN.encode() + b"\x00x",
        "control-byte": b"X-Note: " + LEAKED_TOKEN.encode() + b"\x01",
    }
    answers: dict[str, bytes] = {}
    try:
        for name, line in attacks.items():
            request = b"GET /v1/provisioning-requests HTTP/1.1\r\nHost: x\r\n" + line + b"\r\n\r\n"
            answers[name] = await asyncio.to_thread(_raw_request, port, request)
        async with aiohttp.ClientSession() as session, session.get(f"{base}/healthz") as resp:
            assert resp.status == 200  # still serving
    finally:
        assert api.stop() == 0
    for name, answer in answers.items():
        head, _, body = answer.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        assert status == (431 if name == "too-long" else 400), (name, answer[:200])
        assert b"application/problem+json" in head
        problem = json.loads(body)
        assert problem["status"] == status
        assert LEAKED_TOKEN.encode() not in answer, name
        assert b"Bearer" not in body
    log = api.log()
    assert LEAKED_TOKEN not in log
    warnings = [line for line in log.splitlines() if "http_request_unparseable" in line]
    assert len(warnings) == 3
    assert all(json.loads(w)["level"] == "warning" for w in warnings)
    assert "Traceback" not in log


class Receiver:
    """A callback receiver over HTTPS that always fails (a broken integration)."""

    def __init__(self) -> None:
        self.seen = 0
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.seen += 1
        return web.Response(status=500)


@pytest.fixture
async def failing_receiver(tmp_path: Path) -> AsyncIterator[tuple[Receiver, Path]]:
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    ca_file = tmp_path / "receiver-ca.pem"
    ca_file.write_bytes(ca.cert_pem.bytes())
    recv = Receiver()
    app = web.Application()
    app.router.add_post("/hook", recv.handle)
    async with serving(app, ctx) as url:
        recv.url = f"{url}/hook"
        yield recv, ca_file


async def _wait_for(predicate: Any, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.2)


async def test_failing_callbacks_do_not_fill_the_queue_cap_and_no_ca_file_is_left(
    tmp_path: Path,
    redis_proc: RedisServer,
    fresh_sandbox: SandboxProcess,
    failing_receiver: tuple[Receiver, Path],
) -> None:
    recv, receiver_ca = failing_receiver
    bundle = tmp_path / "bundle.pem"
    bundle.write_text(Path(fresh_sandbox.ca_path).read_text() + receiver_ca.read_text())
    temp = tmp_path / "tmpdir"
    temp.mkdir()
    env = {
        **fresh_sandbox.env(),
        "PROVISIONER_CA_BUNDLE": str(bundle),
        "PROVISIONER_REDIS_URL": redis_proc.url,
        "PROVISIONER_API_KEYS": f"portal:{hash_api_key(API_KEY)},reader:{hash_api_key('x' * 20)}",
        "PROVISIONER_CALLBACK_SECRETS": f"portal:{CALLBACK_SECRET}",
        "PROVISIONER_CALLBACK_ALLOWLIST": "127.0.0.1",
        "PROVISIONER_MAX_QUEUE_DEPTH": "2",
        "PROVISIONER_VERIFY_SETTLE_S": "0.5",
        "PROVISIONER_LOG_FORMAT": "json",
        "TMPDIR": str(temp),
    }
    api, base = await asyncio.to_thread(start_api, env, tmp_path)
    worker = start_worker(env, tmp_path)
    auth = {"Authorization": f"Bearer {API_KEY}"}
    try:
        async with aiohttp.ClientSession() as session:
            ids = []
            for _ in range(2):  # two requests that fail at once, each with a failing callback
                body = {"servicePrincipalId": GITHUB, "callbackUrl": recv.url}
                async with session.post(
                    f"{base}/v1/provisioning-requests", json=body, headers=auth
                ) as resp:
                    assert resp.status in (200, 202), await resp.text()
                    ids.append((await resp.json())["id"])
                await _wait_for(lambda: _callback_failed(session, base, auth, ids[-1]))
            # Their callbacks now wait in arq's queue for a retry (the old cap counted them).
            redis = Redis.from_url(redis_proc.url)
            try:
                waiting = await redis.zrange("provisioner:queue", 0, -1)
            finally:
                await redis.aclose()
            assert len([j for j in waiting if j.startswith(b"callback:")]) == 2
            assert recv.seen >= 2
            # New provisioning work is still accepted: the cap counts provisioning work only.
            for sp in (SALESFORCE, SCIM):
                async with session.post(
                    f"{base}/v1/provisioning-requests",
                    json={"servicePrincipalId": sp},
                    headers=auth,
                ) as resp:
                    assert resp.status == 202, await resp.text()
    finally:
        worker.stop()
        assert api.stop() == 0
    # The API and the worker leave nothing in their temp dir: no combined CA file (the extra
    # CA is trusted through an SSL context), nor anything else.
    assert sorted(p.name for p in temp.iterdir()) == []
    startup = [json.loads(x) for x in api.log().splitlines() if "callback_secret_missing" in x]
    assert [entry["callers"] for entry in startup] == [["reader"]]
    assert startup[0]["level"] == "warning"


async def _callback_failed(
    session: aiohttp.ClientSession, base: str, auth: dict[str, str], request_id: str
) -> bool:
    async with session.get(f"{base}/v1/provisioning-requests/{request_id}", headers=auth) as r:
        record = await r.json()
    return any(c["status"] == 500 for c in record["callbacks"])


def test_http_write_back_address_stops_the_worker(tmp_path: Path, redis_proc: RedisServer) -> None:
    config = tmp_path / "writeback.yaml"
    config.write_text(
        "jira:\n  base_url: http://acme.atlassian.net\n  email: bot@example.com\n"
        "  api_token_env: HARDENING_JIRA_TOKEN\n"
    )
    env = {
        "PROVISIONER_REDIS_URL": redis_proc.url,
        "PROVISIONER_WRITEBACK_FILE": str(config),
        "HARDENING_JIRA_TOKEN": "jira-token-hardening-Lq93",
        "PROVISIONER_TENANT_ID": "4b6e1d2c-8a3f-4e5d-9c0b-7a6f5e4d3c2b",
        "PROVISIONER_CLIENT_ID": "5c7d9e1f-2a3b-4c5d-8e9f-0a1b2c3d4e5f",
        "PROVISIONER_CLIENT_SECRET": "unused-client-secret-value",
        "PROVISIONER_WORKER_METRICS_PORT": str(free_port()),
    }
    worker = Child("worker", cli("worker"), env, tmp_path)
    assert worker.proc.wait(timeout=60) == 2
    worker.stop()
    lines = [line for line in worker.log().splitlines() if line.strip()]
    assert lines[-1].endswith("PROVISIONER_WRITEBACK_FILE: jira.base_url: must be an https:// URL")
    assert "Traceback" not in worker.log()
