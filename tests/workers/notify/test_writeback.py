"""Ticket write-back: the exact requests Jira's REST API v3 and ServiceNow's Table API document."""

from __future__ import annotations

import base64
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web
from redis.asyncio import Redis

from service.core.errors import ConfigError
from service.core.models import State
from tests.helpers.harness import GITHUB, SALESFORCE, Harness, worker_settings
from tests.helpers.local_server import serving
from tests.helpers.tenant_admin import TenantAdmin
from tests.workers.test_watch import deps_for
from workers.notify.writeback import load_writeback
from workers.watch import Watch

JIRA_TOKEN = "jira-api-token-for-tests-xyz"
SN_PASSWORD = "servicenow-password-for-tests"


class TicketSystem:
    """Records every request a fake Jira / ServiceNow receives."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.base = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "raw_path": request.raw_path,
                "headers": dict(request.headers),
                "json": await request.json(),
            }
        )
        status = 201 if request.method == "POST" else 200
        return web.json_response({"id": "10001"}, status=status)


@pytest.fixture
async def tickets(tmp_path: Path) -> AsyncIterator[TicketSystem]:
    """A fake Jira + ServiceNow over HTTPS (write-back URLs must be https), its CA in a file."""
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    (tmp_path / "tickets-ca.pem").write_bytes(ca.cert_pem.bytes())
    system = TicketSystem()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", system.handle)
    async with serving(app, server_ctx) as base:
        system.base = base
        yield system


@pytest.fixture
def configured(
    harness: Harness,
    redis_url: str,
    tickets: TicketSystem,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Harness:
    monkeypatch.setenv("JIRA_API_TOKEN", JIRA_TOKEN)
    monkeypatch.setenv("SN_PASSWORD", SN_PASSWORD)
    config = tmp_path / "writeback.yaml"
    config.write_text(
        f"jira:\n  base_url: {tickets.base}/\n  email: bot@example.com\n"
        "  api_token_env: JIRA_API_TOKEN\n"
        f"servicenow:\n  instance_url: {tickets.base}\n  table: sc_req_item\n"
        "  username: provisioning\n  password_env: SN_PASSWORD\n"
    )
    bundle = tmp_path / "bundle.pem"
    bundle.write_text(
        Path(harness.sandbox.ca_path).read_text() + (tmp_path / "tickets-ca.pem").read_text()
    )
    harness.settings = worker_settings(
        harness.sandbox,
        redis_url,
        queue_name=harness.settings.queue_name,
        writeback_file=config,
        ca_bundle=bundle,
    )
    return harness


def _basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


async def test_jira_gets_a_comment_on_the_issue(configured: Harness, tickets: TicketSystem) -> None:
    rec = await configured.submit(SALESFORCE, caller="webhook:jira", external_reference="PROV-42")
    await configured.drain()
    done = await configured.get(rec.id)
    assert done.state is State.SUCCEEDED
    [req] = tickets.requests
    assert req["method"] == "POST"
    assert req["path"] == "/rest/api/3/issue/PROV-42/comment"
    assert req["headers"]["Authorization"] == _basic("bot@example.com", JIRA_TOKEN)
    assert req["headers"]["Content-Type"].startswith("application/json")
    assert req["headers"]["Accept"] == "application/json"
    body = req["json"]["body"]
    assert body["type"] == "doc"
    assert body["version"] == 1
    text = " ".join(c["text"] for p in body["content"] for c in p["content"])
    assert "succeeded" in text
    assert done.job_id is not None
    assert done.job_id in text
    assert [(c.target, c.delivered) for c in done.callbacks] == [("jira", True)]


async def test_servicenow_gets_a_work_note_with_the_error(
    configured: Harness, tickets: TicketSystem
) -> None:
    sys_id = "9d385017c611228701d22104cc95c371"
    rec = await configured.submit(GITHUB, caller="webhook:servicenow", external_reference=sys_id)
    await configured.drain()
    done = await configured.get(rec.id)
    assert done.state is State.FAILED
    [req] = tickets.requests
    assert req["method"] == "PATCH"
    assert req["path"] == f"/api/now/table/sc_req_item/{sys_id}"
    assert req["headers"]["Authorization"] == _basic("provisioning", SN_PASSWORD)
    note = req["json"]["work_notes"]
    assert set(req["json"]) == {"work_notes"}
    assert "TemplateAmbiguous" in note
    assert done.error is not None
    assert done.error.graph_request_id
    assert done.error.graph_request_id in note


async def test_portal_requests_are_not_written_back(
    configured: Harness, tickets: TicketSystem
) -> None:
    await configured.submit(SALESFORCE, caller="portal", external_reference="PROV-1")
    await configured.drain()
    assert tickets.requests == []


def test_missing_secret_variable_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOPE_TOKEN", raising=False)
    config = tmp_path / "w.yaml"
    config.write_text("jira:\n  base_url: https://x\n  email: a@b\n  api_token_env: NOPE_TOKEN\n")
    with pytest.raises(ConfigError, match=r"PROVISIONER_WRITEBACK_FILE.*NOPE_TOKEN"):
        load_writeback(config)
    config.write_text("jira:\n  base_url: https://x\n  unknown: 1\n")
    with pytest.raises(ConfigError, match="PROVISIONER_WRITEBACK_FILE"):
        load_writeback(config)


@pytest.mark.parametrize(
    "text",
    [
        "jira:\n  base_url: http://acme.atlassian.net\n  email: a@b\n  api_token_env: T\n",
        "servicenow:\n  instance_url: http://acme.service-now.com\n  username: u\n"
        "  password_env: T\n",
        "jira:\n  base_url: https://u:p@acme.atlassian.net\n  email: a@b\n  api_token_env: T\n",
    ],
    ids=["jira-http", "servicenow-http", "userinfo"],
)
def test_write_back_address_must_be_https(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    monkeypatch.setenv("T", "token-value")
    config = tmp_path / "w.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=r"^PROVISIONER_WRITEBACK_FILE: .*(https|plain)"):
        load_writeback(config)


@pytest.mark.parametrize(
    ("caller", "reference", "expected_raw_path"),
    [
        (
            "webhook:servicenow",
            "../../../sys_user/62826bf03710200044e0bfc8bcbe5df1?sysparm_input_display_value=true#",
            "/api/now/table/sc_req_item/..%2F..%2F..%2Fsys_user%2F62826bf03710200044e0bfc8bcbe5df1"
            "%3Fsysparm_input_display_value%3Dtrue%23",
        ),
        (
            "webhook:jira",
            "../OTHER-1/watchers",
            "/rest/api/3/issue/..%2FOTHER-1%2Fwatchers/comment",
        ),
    ],
    ids=["servicenow-sys_user", "jira-watchers"],
)
async def test_a_reference_stored_without_validation_stays_one_segment(
    configured: Harness,
    tickets: TicketSystem,
    caller: str,
    reference: str,
    expected_raw_path: str,
) -> None:
    # Straight into the store, past the intake's format check (an old or planted record).
    rec = await configured.submit(SALESFORCE, caller=caller, external_reference=reference)
    await configured.drain()
    [req] = tickets.requests
    assert req["raw_path"] == expected_raw_path
    assert not req["raw_path"].startswith(("/api/now/table/sys_user", "/rest/api/3/issue/OTHER"))
    done = await configured.get(rec.id)
    assert [c.delivered for c in done.callbacks] == [True]


@pytest.mark.parametrize("reference", ["..", "."])
async def test_a_dot_segment_reference_is_not_written_back(
    configured: Harness, tickets: TicketSystem, reference: str
) -> None:
    rec = await configured.submit(
        SALESFORCE, caller="webhook:servicenow", external_reference=reference
    )
    await configured.drain()
    assert tickets.requests == []
    [skipped] = (await configured.get(rec.id)).callbacks
    assert skipped.skipped
    assert skipped.target == "servicenow"
    assert skipped.error is not None
    assert "externalReference" in skipped.error


async def test_a_change_of_health_is_noted_on_the_ticket(
    configured: Harness, tickets: TicketSystem, redis: Redis
) -> None:
    """Issue 11: the watch reads the job an admin paused after the request succeeded; the change
    is written back to the Jira issue of the request (as a second comment, after its end)."""
    rec = await configured.submit(SALESFORCE, caller="webhook:jira", external_reference="PROV-43")
    await configured.drain()
    done = await configured.get(rec.id)
    assert done.state is State.SUCCEEDED, done.error
    assert done.job_id is not None
    async with deps_for(configured.settings, configured, redis) as deps:
        watch = Watch(deps)
        await watch.check(SALESFORCE, done.job_id)  # healthy: confirms the request, quiet
        await TenantAdmin(configured.sandbox).pause(SALESFORCE, done.job_id)
        assert await watch.check(SALESFORCE, done.job_id)  # healthy -> paused
    await configured.drain()  # the change's notifications (callback, ticket note) run
    ended, changed = tickets.requests
    assert ended["path"] == changed["path"] == "/rest/api/3/issue/PROV-43/comment"
    body = changed["json"]["body"]
    text = " ".join(c["text"] for p in body["content"] for c in p["content"])
    assert f"the application {SALESFORCE} is now paused (was healthy)" in text
    assert done.job_id in text
    assert "the job is paused" in text
