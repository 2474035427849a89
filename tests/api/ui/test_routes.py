"""The status page's pages over real HTTP against a real Redis: list, detail, counters."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

import service.api.ui.routes as ui
from service.core.health import Health
from service.core.keys import Keys
from service.core.models import State, Step
from service.core.queue import notification_jobs
from tests.api.test_routes import api_client, sp
from tests.helpers.ui import (
    OPS_KEY,
    QUEUE,
    XSS,
    XSS_ESCAPED,
    K,
    add_record,
    failed_record,
    login,
    operator_settings,
)


async def test_list_and_detail_escape_every_value(client: TestClient[Any, Any]) -> None:
    record = await add_record(client, **failed_record())
    await add_record(client, id="b" * 32, state=State.SUCCEEDED, external_reference="fine")
    await login(client)

    page = await client.get("/ui")
    text = await page.text()
    assert XSS not in text
    assert XSS_ESCAPED in text
    assert f'href="/ui/requests/{record.id}"' in text
    assert f'title="{record.id}"' in text  # ids are cut to their cell; the tooltip has it all
    assert text.index("b" * 32) < text.index("a" * 32)  # newest first
    assert 'class="badge b-failed"' in text
    assert 'class="badge b-succeeded"' in text
    # One script, from the static folder, carrying the response's nonce; no inline code.
    nonce = re.search(r"script-src 'nonce-([^']+)'", page.headers["Content-Security-Policy"])
    assert nonce is not None
    assert text.count("<script") == 1
    assert re.search(rf'<script src="/ui/static/ui\.js\?v=\w+" nonce="{nonce.group(1)}"', text)
    assert "<style" not in text
    assert re.search(r" on\w+=", text) is None  # no inline event handlers

    detail = await client.get(f"/ui/requests/{record.id}")
    assert detail.status == 200
    text = await detail.text()
    assert XSS not in text
    assert "<b>request</b>" not in text
    assert "bad &lt;b&gt;request&lt;/b&gt;" in text
    assert "{&#34;why&#34;: &#34;&lt;script&gt;" in text  # details as JSON text, escaped
    for expected in (
        "BadRequest",
        "99999999-8888-7777-6666-555555555555",
        "11111111-2222-3333-4444-555555555555",
        "cccccccc-2222-3333-4444-555555555555",
        "1.23 s",
        "87 ms",
        "resolve_template",
        "create_job",
        "No callbacks",
    ):
        assert expected in text, expected
    assert 'http-equiv="refresh"' not in text  # a terminal request does not reload itself


async def test_control_characters_and_long_values_render_visibly(
    client: TestClient[Any, Any],
) -> None:
    hostile = "CHG\x00\x1b[31m\x07\u202eevil\u2066"
    record = await add_record(
        client,
        id="c" * 32,
        external_reference=hostile,
        metadata={"note\x1b": "x" * 256},
        template_id="t" * 200,
    )
    await login(client)
    for path in ("/ui", f"/ui/requests/{record.id}"):
        text = await (await client.get(path)).text()
        for raw in ("\x00", "\x1b", "\x07", "\u202e", "\u2066"):
            assert raw not in text, (path, raw)
        assert "CHG\\u0000\\u001b[31m\\u0007\\u202eevil\\u2066" in text, path
    detail = await (await client.get(f"/ui/requests/{record.id}")).text()
    assert "note\\u001b=" + "x" * 256 in detail


async def test_filters_and_paging(client: TestClient[Any, Any]) -> None:
    for n in range(3):
        await add_record(client, id=f"f{n:031d}", state=State.FAILED)
    await add_record(client, id="s" * 32, state=State.SUCCEEDED, service_principal_id=sp(7))
    await login(client)
    failed = await (await client.get("/ui", params={"state": "failed"})).text()
    assert "f" + "0" * 31 in failed
    assert "s" * 32 not in failed
    assert '<option value="failed" selected>' in failed
    by_sp = await (await client.get("/ui", params={"servicePrincipalId": sp(7).upper()})).text()
    assert "s" * 32 in by_sp
    assert "f" + "0" * 31 not in by_sp
    empty = await client.get("/ui", params={"state": "", "servicePrincipalId": ""})
    assert empty.status == 200
    bad = await client.get("/ui", params={"state": "nope", "servicePrincipalId": "<x>"})
    assert bad.status == 400
    text = await bad.text()
    assert "servicePrincipalId: must be a GUID" in text  # the API's own parameter check
    assert "state: Input should be &#39;queued&#39;" in text
    assert "<x>" not in text
    assert 'value="&lt;x&gt;"' in text
    bad_cursor = await client.get("/ui", params={"cursor": "garbage"})
    assert "cursor" in await bad_cursor.text()

    original = ui.PAGE_SIZE
    ui.PAGE_SIZE = 2
    try:
        first = await (await client.get("/ui")).text()
        found = re.search(r'href="(/ui\?cursor=[^"]+)" rel="next"', first)
        assert found is not None
        second = await client.get(found.group(1).replace("&amp;", "&"))
        text = await second.text()
        assert second.status == 200
        assert text.count('href="/ui/requests/') == 2
        assert "Newest" in text
        # Paging keeps the filter.
        filtered = await (await client.get("/ui", params={"state": "failed"})).text()
        assert re.search(r'href="/ui\?state=failed&amp;cursor=[^"]+" rel="next"', filtered)
        # ?limit= as the API takes it, kept by the pager.
        one = await (await client.get("/ui", params={"limit": "1"})).text()
        assert one.count('href="/ui/requests/') == 1
        assert re.search(r'href="/ui\?limit=1&amp;cursor=[^"]+" rel="next"', one)
    finally:
        ui.PAGE_SIZE = original


async def test_another_callers_record_is_a_404_page(client: TestClient[Any, Any]) -> None:
    theirs = await add_record(client, caller="beta", id="c" * 32)
    await login(client)
    odd = ("..%2f", "%2A", "x:creds", "a" * 2000)
    paths = [f"/ui/requests/{theirs.id}", "/ui/requests/" + "d" * 32]
    for path in [*paths, *(f"/ui/requests/{o}" for o in odd)]:
        resp = await client.get(path)
        assert resp.status == 404, path
        assert "text/html" in resp.headers["Content-Type"]
        assert "Traceback" not in await resp.text()
    listing = await (await client.get("/ui")).text()
    assert theirs.id not in listing


async def test_a_running_request_page_refreshes_itself(client: TestClient[Any, Any]) -> None:
    record = await add_record(client, id="e" * 32, state=State.RUNNING, step=Step.VERIFY)
    await login(client)
    text = await (await client.get(f"/ui/requests/{record.id}")).text()
    assert '<meta http-equiv="refresh" content="5">' in text
    assert "No steps yet." in text


async def test_the_layout_has_nav_tabs(client: TestClient[Any, Any]) -> None:
    await login(client)
    text = await (await client.get("/ui")).text()
    assert re.search(r'<nav class="tabs"[^>]*>\s*<a href="/ui" class="active"', text)
    assert '<a href="/ui/applications">Applications</a>' in text
    detail = await add_record(client, id="d" * 32)
    text = await (await client.get(f"/ui/requests/{detail.id}")).text()
    assert '<a href="/ui" class="active" aria-current="page">Requests</a>' in text


async def test_an_operator_sees_every_callers_requests_with_their_caller(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    async with api_client(operator_settings(redis_url, tmp_path)) as client:
        mine = await add_record(client, "alpha", id="a" * 32, state=State.FAILED)
        ticket = await add_record(client, "webhook:jira", id="b" * 32, external_reference="IAM-7")
        await login(client, OPS_KEY)
        text = await (await client.get("/ui")).text()
        assert f'href="/ui/requests/{mine.id}"' in text
        assert f'href="/ui/requests/{ticket.id}"' in text
        assert "<th>Caller</th>" in text
        assert '<td class="wrap caller">webhook:jira</td>' in text
        assert '<input name="caller"' in text
        assert 'class="requests with-caller"' in text
        # The caller filter, kept by the pager; another caller's request page.
        only = await (
            await client.get("/ui", params={"caller": "webhook:jira", "state": ""})
        ).text()
        assert ticket.id in only
        assert mine.id not in only
        assert 'name="caller" value="webhook:jira"' in only
        detail = await client.get(f"/ui/requests/{ticket.id}")
        assert detail.status == 200
        assert "<dt>Caller</dt><dd>webhook:jira</dd>" in await detail.text()
        bad = await client.get("/ui", params={"caller": "has space"})
        assert bad.status == 400
        assert "caller: must match the pattern" in await bad.text()

    async with api_client(operator_settings(redis_url, tmp_path)) as client:
        await login(client)  # alpha: its own only, no caller column or filter
        text = await (await client.get("/ui")).text()
        assert mine.id in text
        assert ticket.id not in text
        assert "<th>Caller</th>" not in text
        assert 'name="caller"' not in text
        assert (await client.get(f"/ui/requests/{ticket.id}")).status == 404
        assert (await client.get("/ui", params={"caller": "alpha"})).status == 200
        theirs = await client.get("/ui", params={"caller": "webhook:jira"})
        assert theirs.status == 403
        text = await theirs.text()
        assert "needs the &#39;operator&#39; permission" in text
        assert ticket.id not in text


async def test_counters_read_the_live_keys(client: TestClient[Any, Any], redis: Redis) -> None:
    await login(client)
    resp = await client.get("/ui/counters")
    assert resp.status == 200
    assert await resp.json() == {
        "queueDepth": 0,
        "inFlight": 0,
        "callbacksPending": 0,
        "throttleCooldowns": 0,
        "workersAlive": 0,
        "cooldowns": [],
        "applications": {h.value: 0 for h in Health},
    }
    # arq's queue holds provisioning jobs, a deferred callback, a write-back and the
    # reconciler's next cron run; only requests in state queued are provisioning work.
    [(_, callback), (_, writeback)] = notification_jobs("r9", 4, callback=True, writeback=True)
    await redis.zadd(
        QUEUE, {"q1": 1, "r1": 2, callback: 9e12, writeback: 3, "cron:reconcile:1": 9e12}
    )
    await redis.zadd(K.by_state("queued"), {"q1": 1})
    await redis.zadd(K.by_state("running"), {"r1": 1, "r2": 2})
    await redis.set(K.cooldown("tenant-a"), "1", px=30_000)
    await redis.set(K.cooldown(XSS), "1", px=90_000)
    await redis.set(K.cooldown("stale"), "1")  # no TTL: the workers ignore it, so do we
    await redis.set(K.health_check("worker-1"), "ok", ex=30)
    await redis.set(K.health_check("worker-2"), "ok", ex=30)
    await redis.set(Keys("other-queue").health_check("worker-3"), "ok", ex=30)  # another deployment
    counters = await (await client.get("/ui/counters")).json()
    cooldowns = counters.pop("cooldowns")
    counters.pop("applications")
    assert counters == {
        "queueDepth": 1,
        "inFlight": 2,
        "callbacksPending": 2,
        "throttleCooldowns": 2,
        "workersAlive": 2,
    }
    # Each active cool-down with its seconds left, the longest first.
    assert [c["tenant"] for c in cooldowns] == [XSS, "tenant-a"]
    assert 85 < cooldowns[0]["remainingS"] <= 90
    assert 25 < cooldowns[1]["remainingS"] <= 30
    page = await (await client.get("/ui")).text()
    assert '<b data-counter="queueDepth">1</b>' in page
    assert '<b data-counter="callbacksPending">2</b>' in page
    assert '<b data-counter="workersAlive">2</b>' in page
    assert '<b data-counter="throttleCooldowns">2</b>' in page
    assert '<span class="mono">tenant-a</span> 30 s left' in page
    assert XSS not in page
    assert XSS_ESCAPED + "</span> 90 s left" in page
    # The same numbers /metrics reports (one reader of the keys).
    metrics = await (await client.get("/metrics")).text()
    assert "provisioner_queue_depth 1.0" in metrics
    assert "provisioner_callbacks_pending 2.0" in metrics
    assert "provisioner_workers_alive 2.0" in metrics
