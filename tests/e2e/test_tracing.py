"""OpenTelemetry: with OTEL_EXPORTER_OTLP_ENDPOINT set, API requests, Graph calls and workflow
steps arrive as spans at an OTLP/HTTP receiver, and log lines carry the trace id."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from service.core.config_values import hash_api_key
from tests.helpers.harness import SALESFORCE
from tests.helpers.local_server import serving
from tests.helpers.redis_server import RedisServer
from tests.helpers.sandbox import SandboxProcess
from tests.helpers.stack import api_and_worker

pytestmark = pytest.mark.e2e
KEY = "pk_tracing-test-key-0123456789"


class Collector:
    def __init__(self) -> None:
        self.spans: list[tuple[str, str, str]] = []  # (service, name, trace id)

    async def handle(self, request: web.Request) -> web.Response:
        export = ExportTraceServiceRequest()
        export.ParseFromString(await request.read())
        for resource_spans in export.resource_spans:
            service = next(
                a.value.string_value
                for a in resource_spans.resource.attributes
                if a.key == "service.name"
            )
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    self.spans.append((service, span.name, span.trace_id.hex()))
        return web.Response(status=200)


@pytest.fixture
async def collector() -> AsyncIterator[tuple[str, Collector]]:
    """An OTLP/HTTP receiver: (base URL, what it received)."""
    received = Collector()
    app = web.Application()
    app.router.add_post("/v1/traces", received.handle)
    async with serving(app) as base:
        yield base, received


async def test_spans_and_trace_ids(
    tmp_path: Path, fresh_sandbox: SandboxProcess, collector: tuple[str, Collector]
) -> None:
    otlp_url, received = collector
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    env = {
        **fresh_sandbox.env(),
        "PROVISIONER_REDIS_URL": redis.url,
        "PROVISIONER_API_KEYS": f"t:{hash_api_key(KEY)}",
        "PROVISIONER_VERIFY_SETTLE_S": "1",
        "PROVISIONER_LOG_FORMAT": "json",
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_url,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    async with api_and_worker(env, tmp_path, redis) as base:
        headers = {"Authorization": f"Bearer {KEY}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            async with session.post(
                f"{base}/v1/provisioning-requests", json={"servicePrincipalId": SALESFORCE}
            ) as resp:
                assert resp.status == 202
                request_id = (await resp.json())["id"]
            record: dict[str, Any] = {}
            for _ in range(100):
                async with session.get(f"{base}/v1/provisioning-requests/{request_id}") as resp:
                    record = await resp.json()
                if record["state"] == "succeeded":
                    break
                await asyncio.sleep(0.2)
            assert record["state"] == "succeeded"
        for _ in range(50):
            names = {(service, name) for service, name, _ in received.spans}
            if ("provisioner-worker", "step verify") in names:
                break
            await asyncio.sleep(0.2)
    names = {(service, name) for service, name, _ in received.spans}
    for step in ("resolve_template", "create_job", "save_secrets", "start_job", "verify"):
        assert ("provisioner-worker", f"step {step}") in names
    assert any(svc == "provisioner-api" and "POST" in name for svc, name in names), names
    assert any(svc == "provisioner-worker" and name.startswith("POST") for svc, name in names)
    traced = {trace_id for _, _, trace_id in received.spans}
    log_ids = {
        json.loads(line).get("trace_id")
        for line in (tmp_path / "api.log").read_text().splitlines()
        if line.startswith("{") and "http_request" in line
    }
    assert log_ids & traced, "API log lines carry the trace id of their request's span"
