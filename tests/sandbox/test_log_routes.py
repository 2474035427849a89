"""``GET /auditLogs/provisioning`` over TLS: the filter by job, ``$top`` paging through an
opaque ``@odata.nextLink``, the 403 without ``AuditLog.Read.All`` and the control route."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from sandbox.models import CycleRules
from tests.helpers.sandbox import InProcessSandbox, in_process_sandbox

SCIM = "cbe29441-8636-4563-a4a8-c390c0e83cb4"
READ_ONLY_APP = "e2ae45db-2954-4e51-a7e6-3f3a57ae4b50"


@pytest.fixture
async def sb(tmp_path: Path) -> AsyncIterator[InProcessSandbox]:
    async with in_process_sandbox(tmp_path) as sandbox:
        yield sandbox


async def _get(sb: InProcessSandbox, url: str, token: str) -> tuple[int, Any]:
    async with sb.session.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status, await resp.json(content_type=None)


def _cycle(sb: InProcessSandbox) -> str:
    """A SyncAll job whose first cycle has ended (first_cycle_s 0: at once)."""
    state = sb.ctx.state
    state.save_secrets(SCIM, [("SyncAll", "true")])
    job = state.create_job(SCIM, "scim", initial_status="NotConfigured")
    state.start_job(SCIM, job.id, rules=CycleRules(first_cycle_s=0))
    return job.id


async def test_pages_of_one_job_follow_the_next_link(sb: InProcessSandbox) -> None:
    job_id = _cycle(sb)
    other = _cycle(sb)
    token = await sb.token()
    url: str | None = f"{sb.base_url}/v1.0/auditLogs/provisioning?$top=10&$filter=" + quote(
        f"jobId eq '{job_id}'"
    )
    seen: list[dict[str, Any]] = []
    pages = 0
    while url:
        status, body = await _get(sb, url, token)
        assert status == 200, body
        assert body["@odata.context"].endswith("$metadata#auditLogs/provisioning")
        assert len(body["value"]) <= 10
        seen.extend(body["value"])
        url = body.get("@odata.nextLink")
        pages += 1
    assert pages == 3  # 25 entries, 10 a page
    assert len({e["id"] for e in seen}) == 25
    assert {e["jobId"] for e in seen} == {job_id}
    assert other != job_id
    async with sb.session.get(f"{sb.base_url}/_sandbox/provisioning-logs") as resp:
        assert (await resp.json())["entries"] == 50


async def test_without_the_audit_log_permission_graph_answers_403(sb: InProcessSandbox) -> None:
    token = await sb.token(READ_ONLY_APP)
    status, body = await _get(sb, f"{sb.base_url}/v1.0/auditLogs/provisioning", token)
    assert status == 403
    assert body["error"]["code"] == "Authorization_RequestDenied"


async def test_a_filter_the_page_does_not_document_is_a_400(sb: InProcessSandbox) -> None:
    token = await sb.token()
    url = f"{sb.base_url}/v1.0/auditLogs/provisioning?$filter=" + quote("jobId ne 'x'")
    status, body = await _get(sb, url, token)
    assert status == 400
    assert body["error"]["code"] == "BadRequest"
    status, _ = await _get(sb, f"{sb.base_url}/v1.0/auditLogs/provisioning?$top=0", token)
    assert status == 400


async def test_the_control_sets_outcomes(sb: InProcessSandbox) -> None:
    url = f"{sb.base_url}/_sandbox/provisioning-logs"
    async with sb.session.put(url, json={"failures": {"X": "why"}}) as resp:
        assert resp.status == 200
        assert (await resp.json())["failures"] == {"x": "why"}
    async with sb.session.put(url, json={"failures": "no"}) as resp:
        assert resp.status == 400
