"""The status page's applications view over real HTTP against a real Redis: the list (what the
caller may see, the health filter, paging), one application's jobs and history, escaping, the
404 of another caller's, and the counters of applications by health."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

import service.api.ui.applications as ui_apps
from service.api.state import STORE
from service.api.ui.applications import AppRow
from service.core.application_store import ApplicationStore, Update
from service.core.applications import (
    Application,
    ErrorView,
    ExecutionView,
    QuarantineView,
    Reading,
    WatchedJob,
)
from service.core.cycles import FailureCount, LastCycle
from service.core.fields import utcnow
from service.core.health import Health
from tests.api.test_routes import api_client, sp
from tests.helpers.ui import (
    OPS_KEY,
    XSS,
    XSS_ESCAPED,
    add_application,
    add_record,
    login,
    operator_settings,
)

HEALTHY = Reading(health=Health.HEALTHY, reason="scheduled, last cycle succeeded")


def quarantined(reason: str = "quarantined (EncounteredQuarantineException)") -> Reading:
    since = utcnow() - timedelta(hours=2)
    return Reading(
        health=Health.QUARANTINED,
        reason=reason,
        schedule_state="Paused",
        status_code="Paused",
        quarantine=QuarantineView(
            reason="EncounteredQuarantineException",
            since=since,
            next_attempt=since + timedelta(hours=12),
            error=ErrorView(code="SandboxInvalidCredentials", message=f"bad {XSS}"),
        ),
        last_execution=ExecutionView(
            state="Failed",
            began=since - timedelta(minutes=1),
            ended=since,
            error=ErrorView(code="SandboxInvalidCredentials", message="creds"),
        ),
    )


async def test_the_list_shows_the_callers_applications_with_health_and_times(
    client: TestClient[Any, Any],
) -> None:
    await add_application(client, sp(1), "alpha", HEALTHY)
    await add_application(client, sp(2), "alpha", HEALTHY, quarantined(f"why {XSS}"))
    await add_application(client, sp(3), "beta", quarantined())  # beta's: alpha never sees it
    await login(client)
    resp = await client.get("/ui/applications")
    assert resp.status == 200
    text = await resp.text()
    assert '<a href="/ui/applications" class="active" aria-current="page">Applications</a>' in text
    assert f'href="/ui/applications/{sp(1)}"' in text
    assert f'href="/ui/applications/{sp(2)}"' in text
    assert sp(3) not in text
    assert text.index(sp(1)) < text.index(sp(2))  # by principal id
    assert 'class="badge b-healthy"' in text
    assert 'class="badge b-quarantined"' in text
    assert XSS not in text
    assert f"why {XSS_ESCAPED}" in text
    assert "scheduled, last cycle succeeded" in text
    assert text.count("<time datetime=") >= 4  # last checked and next check of each
    # The counters strip counts every application of the deployment, by health.
    assert '<b data-health="quarantined">2</b>' in text
    assert '<b data-health="healthy">1</b>' in text
    counters = await (await client.get("/ui/counters")).json()
    assert counters["applications"]["quarantined"] == 2
    assert list(counters["applications"]) == [h.value for h in Health]


async def test_the_health_filter_and_paging(client: TestClient[Any, Any]) -> None:
    for n in range(10, 15):
        await add_application(client, sp(n), "alpha", HEALTHY)
    for n in (11, 13, 14):
        await add_application(client, sp(n), "alpha", quarantined())
    await login(client)
    text = await (await client.get("/ui/applications", params={"health": "quarantined"})).text()
    assert [sp(11), sp(13), sp(14)] == re.findall(r'href="/ui/applications/([0-9a-f-]{36})"', text)
    assert '<option value="quarantined" selected>' in text
    assert (await client.get("/ui/applications", params={"health": ""})).status == 200
    bad = await client.get("/ui/applications", params={"health": "<sick>", "x": "1"})
    assert bad.status == 400
    text = await bad.text()
    assert "health: Input should be" in text
    assert "x: is not a known field" in text
    assert "<sick>" not in text

    original = ui_apps.PAGE_SIZE
    ui_apps.PAGE_SIZE = 2
    try:
        seen: list[str] = []
        path = "/ui/applications?health=quarantined"
        while path:
            text = await (await client.get(path)).text()
            seen += re.findall(r'href="/ui/applications/([0-9a-f-]{36})"', text)
            found = re.search(r'href="(/ui/applications\?[^"]+)" rel="next"', text)
            path = found.group(1).replace("&amp;", "&") if found else ""
            if path:
                assert "health=quarantined" in path  # paging keeps the filter
        assert seen == [sp(11), sp(13), sp(14)]
        assert "« First" in text
    finally:
        ui_apps.PAGE_SIZE = original
    # ?limit= as the API takes it, kept by the pager.
    text = await (await client.get("/ui/applications", params={"limit": "1"})).text()
    assert len(re.findall(r'href="/ui/applications/([0-9a-f-]{36})"', text)) == 1
    assert re.search(r'href="/ui/applications\?limit=1&amp;cursor=[^"]+" rel="next"', text)


async def test_one_application_shows_each_job_its_history_and_requests(
    client: TestClient[Any, Any],
) -> None:
    first = await add_application(client, sp(4), "alpha", HEALTHY, external_reference="CHG-1")
    second = await add_application(
        client, sp(4), "alpha", HEALTHY, quarantined(), template="scimV2", id="e" * 32
    )
    theirs = await add_application(client, sp(4), "beta")  # beta's request: not listed for alpha
    await login(client)
    resp = await client.get(f"/ui/applications/{sp(4)}")
    assert resp.status == 200
    text = await resp.text()
    assert XSS not in text
    for expected in (
        f"scim.{sp(4)[-4:]}",
        f"scimV2.{sp(4)[-4:]}",
        "scheduled, last cycle succeeded",
        "Paused",
        "EncounteredQuarantineException",
        "SandboxInvalidCredentials",
        f"bad {XSS_ESCAPED}",
        "Failed, began",
        "quarantined (EncounteredQuarantineException)",
        f'href="/ui/requests/{first.id}"',
        f'href="/ui/requests/{second.id}"',
        "CHG-1",
        f'href="/ui?servicePrincipalId={sp(4)}"',
    ):
        assert expected in text, expected
    assert theirs.id not in text
    # The quarantined job first; its history newest first, each change with its time.
    assert text.index("scimV2.") < text.index("scim." + sp(4)[-4:])
    history = text[text.index('<table class="history">') :]
    history = history[: history.index("</table>")]
    assert history.index("b-quarantined") < history.index("b-unknown")
    assert history.count("<time datetime=") == 2  # unknown -> healthy -> quarantined
    # The request page links to its application, with its health.
    detail = await (await client.get(f"/ui/requests/{second.id}")).text()
    assert f'<a href="/ui/applications/{sp(4)}">application</a>' in detail
    assert 'class="badge b-quarantined"' in detail


async def test_the_last_cycle_per_user_is_shown_escaped(client: TestClient[Any, Any]) -> None:
    await add_application(client, sp(7), "alpha", HEALTHY)
    await add_application(client, sp(8), "alpha", HEALTHY)
    cycle = LastCycle(
        began=utcnow() - timedelta(minutes=40),
        ended=utcnow(),
        succeeded=21,
        failed=3,
        skipped=1,
        warnings=0,
        top_failures=[FailureCount(reason="SandboxEntryExportFailed", count=3, message=XSS)],
        truncated=True,
    )
    denied = LastCycle(unavailable=f"Graph answered 403 {XSS}")
    apps = ApplicationStore.of(client.app[STORE])
    for principal, value in ((sp(7), cycle), (sp(8), denied)):

        def change(app: Application, value: LastCycle = value) -> Update:
            app.jobs[0].last_cycle = value
            return Update()

        await apps.update(principal, change)
    await login(client)
    text = await (await client.get(f"/ui/applications/{sp(7)}")).text()
    assert XSS not in text
    for expected in (
        "21 succeeded, 3 failed, 1 skipped",
        "at least: the watch read only its first pages",
        "SandboxEntryExportFailed</span>: 3",
        XSS_ESCAPED,
    ):
        assert expected in text, expected
    text = await (await client.get(f"/ui/applications/{sp(8)}")).text()
    assert XSS not in text
    assert f'unavailable: <span class="wrap">Graph answered 403 {XSS_ESCAPED}' in text


async def test_another_callers_or_an_unknown_application_is_a_404_page(
    client: TestClient[Any, Any],
) -> None:
    theirs = await add_application(client, sp(5), "beta", HEALTHY)
    failed = await add_record(client, id="f" * 32, service_principal_id=sp(6))  # no job
    await login(client)
    for path in (
        f"/ui/applications/{sp(5)}",
        f"/ui/applications/{sp(6)}",
        "/ui/applications/not-a-guid",
        "/ui/applications/%7B" + sp(5) + "%7D",
        "/ui/applications/" + "a" * 2000,
    ):
        resp = await client.get(path)
        assert resp.status == 404, path
        assert "text/html" in resp.headers["Content-Type"]
        assert "Not Found" in await resp.text(), path
    assert theirs.service_principal_id not in await (await client.get("/ui/applications")).text()
    detail = await (await client.get(f"/ui/requests/{failed.id}")).text()
    assert "/ui/applications/" + sp(6) not in detail  # no application: no link


async def test_an_operator_sees_every_callers_requests_of_an_application(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    async with api_client(operator_settings(redis_url, tmp_path)) as client:
        mine = await add_application(client, sp(7), "alpha", HEALTHY)
        ticket = await add_application(client, sp(7), "webhook:jira", HEALTHY)
        await login(client)
        text = await (await client.get(f"/ui/applications/{sp(7)}")).text()
        assert mine.id in text
        assert ticket.id not in text
        assert "<th>Caller</th>" not in text
    async with api_client(operator_settings(redis_url, tmp_path)) as client:
        await login(client, OPS_KEY)
        # Applications follow the API's rule (GET /v1/applications): the operator's policy
        # does not name the principal and none of its requests touched it.
        assert (await client.get(f"/ui/applications/{sp(7)}")).status == 404
        await add_application(client, sp(7), "ops", HEALTHY)
        text = await (await client.get(f"/ui/applications/{sp(7)}")).text()
        assert mine.id in text
        assert ticket.id in text
        assert "<th>Caller</th>" in text


def test_a_row_summarises_the_jobs() -> None:
    now = utcnow()
    app = Application(
        service_principal_id=sp(8),
        jobs=[
            WatchedJob(
                job_id="a",
                template_id="scim",
                health=Health.HEALTHY,
                reason="fine",
                checked_at=now - timedelta(minutes=5),
                next_check_at=now + timedelta(minutes=5),
            ),
            WatchedJob(
                job_id="b",
                template_id="salesforce",
                health=Health.FAILING,
                reason="cycles fail",
                checked_at=now - timedelta(minutes=1),
                next_check_at=now + timedelta(minutes=1),
                watching=False,
            ),
        ],
    )
    row = AppRow.of(app)
    assert (row.health, row.reason, row.jobs) == (Health.FAILING, "cycles fail", 2)
    assert row.templates == ["salesforce", "scim"]
    assert row.checked_at == now - timedelta(minutes=1)
    assert row.next_check_at == now + timedelta(minutes=5)  # a job no longer watched is not due
    empty = AppRow.of(Application(service_principal_id=sp(9)))
    assert (empty.health, empty.reason, empty.checked_at) == (
        Health.UNKNOWN,
        "no job watched",
        None,
    )
