"""The /ui status page over real HTTP against a real Redis: login, session, escaping, counters."""

from __future__ import annotations

import json
import re
import ssl
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from service.api.app import STORE, create_app
from service.api.ui.routes import SESSION_COOKIE, SESSION_TTL_S
from service.core.keys import Keys
from service.core.models import ErrorInfo, HistoryEntry, Outcome, Record, State, Step, utcnow
from tests.api.test_routes import API_KEY, AUTH, OTHER_KEY, api_client, make_settings, sp

XSS = "<script>alert('x')</script>"
QUEUE = "provisioner:queue"
K = Keys(QUEUE)


@pytest.fixture
async def client(redis: Redis, redis_url: str) -> AsyncIterator[TestClient[Any, Any]]:
    async with api_client(make_settings(redis_url)) as c:
        yield c


def origin(client: TestClient[Any, Any]) -> dict[str, str]:
    return {"Origin": str(client.make_url("")).rstrip("/")}


async def login(client: TestClient[Any, Any], key: str = API_KEY) -> Any:
    return await client.post(
        "/ui/login", data={"apiKey": key}, headers=origin(client), allow_redirects=False
    )


async def add_record(client: TestClient[Any, Any], caller: str = "alpha", **fields: Any) -> Record:
    fields.setdefault("service_principal_id", sp(1))
    fields.setdefault("created_at", utcnow())
    record = Record(caller=caller, **fields)
    await client.app[STORE].save(record, notify=False)
    return record


def failed_record() -> dict[str, Any]:
    at = utcnow() - timedelta(seconds=5)
    return {
        "id": "a" * 32,
        "state": State.FAILED,
        "template_id": "scim",
        "external_reference": XSS,
        "attempts": 2,
        "history": [
            HistoryEntry(
                step=Step.RESOLVE_TEMPLATE,
                outcome=Outcome.SUCCEEDED,
                at=at,
                attempt=1,
                duration_ms=1234,
                graph_status=200,
                graph_request_id="11111111-2222-3333-4444-555555555555",
                client_request_id="cccccccc-2222-3333-4444-555555555555",
                message="template scim",
            ),
            HistoryEntry(
                step=Step.CREATE_JOB,
                outcome=Outcome.FAILED,
                at=at + timedelta(seconds=1),
                attempt=2,
                duration_ms=87,
                graph_status=400,
                graph_request_id="99999999-8888-7777-6666-555555555555",
                message=f"bad <b>request</b> {XSS}",
            ),
        ],
        "error": ErrorInfo(
            code="BadRequest",
            message=f"Graph said no {XSS}",
            graph_status=400,
            graph_request_id="99999999-8888-7777-6666-555555555555",
            details={"why": XSS},
        ),
    }


# login and session ---------------------------------------------------------------------------
async def test_unauthenticated_pages_redirect_to_login(client: TestClient[Any, Any]) -> None:
    for path in ("/ui", "/ui/requests/" + "a" * 32, "/ui/nowhere"):
        resp = await client.get(path, allow_redirects=False)
        assert resp.status == 303, path
        assert resp.headers["Location"] == "/ui/login"
    page = await client.get("/ui/login")
    assert page.status == 200
    assert page.content_type == "text/html"
    text = await page.text()
    assert 'name="apiKey"' in text
    assert 'type="password"' in text
    # The counters are JSON for the page's script: 401, not a redirect.
    assert (await client.get("/ui/counters", allow_redirects=False)).status == 401


async def test_login_sets_a_hardened_session_cookie_that_names_the_caller(
    client: TestClient[Any, Any], redis: Redis
) -> None:
    resp = await login(client)
    assert resp.status == 303
    assert resp.headers["Location"] == "/ui"
    cookie = resp.cookies[SESSION_COOKIE]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/ui"
    assert not cookie["secure"]  # plain http here; Secure is set when the request is https
    assert int(cookie["max-age"]) == SESSION_TTL_S
    session_id = cookie.value
    assert API_KEY not in session_id
    # Redis holds the caller under a hash of the session id, with the TTL; never the key.
    keys = [k.decode() async for k in redis.scan_iter(match=K.ui_session("*"))]
    assert len(keys) == 1
    assert session_id not in keys[0]
    assert await redis.get(keys[0]) == b"alpha"
    assert 0 < await redis.ttl(keys[0]) <= SESSION_TTL_S
    for key in [k async for k in redis.scan_iter()]:
        value = await redis.get(key) if await redis.type(key) == b"string" else b""
        assert API_KEY.encode() not in (value or b"")

    page = await client.get("/ui")  # the client's cookie jar sends the cookie
    assert page.status == 200
    text = await page.text()
    assert "signed in as <b>alpha</b>" in text
    assert "Content-Security-Policy" in page.headers
    assert page.headers["Cache-Control"] == "no-store"
    # Already signed in: the prompt sends to the list.
    again = await client.get("/ui/login", allow_redirects=False)
    assert again.status == 303

    out = await client.post("/ui/logout", headers=origin(client), allow_redirects=False)
    assert out.status == 303
    assert out.headers["Location"] == "/ui/login"
    assert [k async for k in redis.scan_iter(match=K.ui_session("*"))] == []
    assert (await client.get("/ui", allow_redirects=False)).status == 303


async def test_cookie_is_secure_over_https(redis: Redis, redis_url: str) -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    server = TestServer(create_app(make_settings(redis_url)), host="127.0.0.1")
    await server.start_server(ssl=server_ctx)
    async with TestClient(server, connector=aiohttp.TCPConnector(ssl=client_ctx)) as client:
        assert str(client.make_url("")).startswith("https://")
        resp = await login(client)
        assert resp.status == 303
        cookie = resp.cookies[SESSION_COOKIE]
        assert cookie["secure"] is True
        assert cookie["httponly"] is True
        assert (await client.get("/ui", allow_redirects=False)).status == 200


async def test_secure_cookie_can_be_forced(redis: Redis, redis_url: str) -> None:
    # Behind a proxy that terminates TLS the API sees http; the setting still marks it Secure.
    settings = make_settings(redis_url, ui_cookie_secure=True)
    async with api_client(settings) as client:
        resp = await login(client)
        assert resp.status == 303
        cookie = resp.cookies[SESSION_COOKIE]
        assert cookie["secure"] is True
        assert cookie["httponly"] is True
        assert cookie["samesite"] == "Strict"


async def test_bad_key_shows_the_login_page_with_an_error(client: TestClient[Any, Any]) -> None:
    for key in ("wrong-key", "", " " * 3, "x" * 10_000):
        resp = await login(client, key)
        assert resp.status == 401, key[:10]
        text = await resp.text()
        assert "That API key is not valid." in text
        assert SESSION_COOKIE not in resp.cookies
    assert (await client.get("/ui", allow_redirects=False)).status == 303


async def test_posts_need_a_same_host_origin_or_referer(client: TestClient[Any, Any]) -> None:
    cases: list[dict[str, str]] = [
        {},
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Referer": "https://evil.example/ui/login"},
    ]
    for headers in cases:
        resp = await client.post(
            "/ui/login", data={"apiKey": API_KEY}, headers=headers, allow_redirects=False
        )
        assert resp.status == 403, headers
        assert SESSION_COOKIE not in resp.cookies
    referer = {"Referer": str(client.make_url("/ui/login"))}
    resp = await client.post(
        "/ui/login", data={"apiKey": API_KEY}, headers=referer, allow_redirects=False
    )
    assert resp.status == 303
    # Logout from another site does nothing.
    evil = await client.post(
        "/ui/logout", headers={"Origin": "https://evil.example"}, allow_redirects=False
    )
    assert evil.status == 403
    assert (await client.get("/ui", allow_redirects=False)).status == 200


async def test_a_forged_or_expired_session_is_not_a_login(
    client: TestClient[Any, Any], redis: Redis
) -> None:
    client.session.cookie_jar.update_cookies({SESSION_COOKIE: "A" * 43})
    assert (await client.get("/ui", allow_redirects=False)).status == 303
    await login(client)
    async for key in redis.scan_iter(match=K.ui_session("*")):
        await redis.delete(key)  # as if the 8 h TTL had run out
    assert (await client.get("/ui", allow_redirects=False)).status == 303


async def test_session_cookie_is_not_an_api_credential(client: TestClient[Any, Any]) -> None:
    await login(client)
    session_id = client.session.cookie_jar.filter_cookies(client.make_url("/ui"))[SESSION_COOKIE]
    resp = await client.get(
        "/v1/provisioning-requests", headers={"Cookie": f"{SESSION_COOKIE}={session_id.value}"}
    )
    assert resp.status == 401


async def test_bearer_key_works_on_ui_pages_too(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/ui", headers=AUTH, allow_redirects=False)
    assert resp.status == 200
    assert "signed in as <b>alpha</b>" in await resp.text()


async def test_a_caller_without_read_permission_cannot_sign_in(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(
        json.dumps({"callers": {"alpha": {"permissions": ["write"]}, "beta": {}}, "default": None})
    )
    async with api_client(make_settings(redis_url, access_policy_file=str(policy))) as client:
        resp = await login(client)
        assert resp.status == 403
        assert "lacks the &#x27;read&#x27; permission" in await resp.text()
        page = await client.get("/ui", headers=AUTH, allow_redirects=False)
        assert page.status == 403
        assert "text/html" in page.headers["Content-Type"]
        assert (await login(client, OTHER_KEY)).status == 303


# pages ---------------------------------------------------------------------------------------
async def test_list_and_detail_escape_every_value(client: TestClient[Any, Any]) -> None:
    record = await add_record(client, **failed_record())
    await add_record(client, id="b" * 32, state=State.SUCCEEDED, external_reference="fine")
    await login(client)

    page = await client.get("/ui")
    text = await page.text()
    assert XSS not in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
    assert f'href="/ui/requests/{record.id}"' in text
    assert text.index("b" * 32) < text.index("a" * 32)  # newest first
    assert 'class="badge b-failed"' in text
    assert 'class="badge b-succeeded"' in text
    # The one inline script is the nonce'd counters poller.
    nonce = re.search(r"script-src 'nonce-([^']+)'", page.headers["Content-Security-Policy"])
    assert nonce is not None
    assert text.count("<script") == 1
    assert f'<script nonce="{nonce.group(1)}">' in text

    detail = await client.get(f"/ui/requests/{record.id}")
    assert detail.status == 200
    text = await detail.text()
    assert XSS not in text
    assert "<b>request</b>" not in text
    assert "bad &lt;b&gt;request&lt;/b&gt;" in text
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


async def test_filters_and_paging(client: TestClient[Any, Any]) -> None:
    for n in range(3):
        await add_record(client, id=f"f{n:031d}", state=State.FAILED)
    await add_record(client, id="s" * 32, state=State.SUCCEEDED, service_principal_id=sp(7))
    await login(client)
    failed = await (await client.get("/ui", params={"state": "failed"})).text()
    assert "f" + "0" * 31 in failed
    assert "s" * 32 not in failed
    by_sp = await (await client.get("/ui", params={"servicePrincipalId": sp(7).upper()})).text()
    assert "s" * 32 in by_sp
    assert "f" + "0" * 31 not in by_sp
    empty = await client.get("/ui", params={"state": "", "servicePrincipalId": ""})
    assert empty.status == 200
    bad = await client.get("/ui", params={"state": "nope", "servicePrincipalId": "<x>"})
    assert bad.status == 400
    text = await bad.text()
    assert "must be a GUID" in text
    assert "<x>" not in text
    assert "&lt;x&gt;" in text
    bad_cursor = await client.get("/ui", params={"cursor": "garbage"})
    assert "cursor" in await bad_cursor.text()

    import service.api.ui.routes as ui

    original = ui.PAGE_SIZE
    ui.PAGE_SIZE = 2
    try:
        first = await (await client.get("/ui")).text()
        found = re.search(r'href="(/ui\?cursor=[^"]+)" rel="next"', first)
        assert found is not None
        second = await client.get(found.group(1).replace("&amp;", "&"))
        text = await second.text()
        assert second.status == 200
        assert text.count("/ui/requests/") == 2
        assert "Newest" in text
    finally:
        ui.PAGE_SIZE = original


async def test_another_callers_record_is_a_404_page(client: TestClient[Any, Any]) -> None:
    theirs = await add_record(client, caller="beta", id="c" * 32)
    await login(client)
    for path in (f"/ui/requests/{theirs.id}", "/ui/requests/" + "d" * 32, "/ui/requests/..%2f"):
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
    assert 'http-equiv="refresh"' in text
    assert "No steps yet." in text


async def test_counters_read_the_live_keys(client: TestClient[Any, Any], redis: Redis) -> None:
    await login(client)
    resp = await client.get("/ui/counters")
    assert resp.status == 200
    assert await resp.json() == {
        "queueDepth": 0,
        "inFlight": 0,
        "throttleCooldowns": 0,
        "workersAlive": 0,
        "cooldowns": [],
    }
    await redis.zadd(QUEUE, {"job-1": 1, "job-2": 2, "job-3": 3})
    await redis.zadd(K.by_state("running"), {"r1": 1, "r2": 2})
    await redis.zadd(K.by_state("queued"), {"q1": 1})  # queued is not in flight
    await redis.set(K.cooldown("tenant-a"), "1", px=30_000)
    await redis.set(K.cooldown(XSS), "1", px=90_000)
    await redis.set(K.cooldown("stale"), "1")  # no TTL: the workers ignore it, so do we
    await redis.set(K.health_check("worker-1"), "ok", ex=30)
    await redis.set(K.health_check("worker-2"), "ok", ex=30)
    await redis.set(Keys("other-queue").health_check("worker-3"), "ok", ex=30)  # another deployment
    counters = await (await client.get("/ui/counters")).json()
    cooldowns = counters.pop("cooldowns")
    assert counters == {
        "queueDepth": 3,
        "inFlight": 2,
        "throttleCooldowns": 2,
        "workersAlive": 2,
    }
    # Each active cool-down with its seconds left, the longest first.
    assert [c["tenant"] for c in cooldowns] == [XSS, "tenant-a"]
    assert 85 < cooldowns[0]["remainingS"] <= 90
    assert 25 < cooldowns[1]["remainingS"] <= 30
    page = await (await client.get("/ui")).text()
    assert '<b data-counter="queueDepth">3</b>' in page
    assert '<b data-counter="workersAlive">2</b>' in page
    assert '<b data-counter="throttleCooldowns">2</b>' in page
    assert "<span class='mono'>tenant-a</span> 30 s left" in page
    assert XSS not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;</span> 90 s left" in page
    # The same numbers /metrics reports (one reader of the keys).
    metrics = await (await client.get("/metrics")).text()
    assert "provisioner_queue_depth 3.0" in metrics
    assert "provisioner_workers_alive 2.0" in metrics


async def test_redis_down_is_an_html_503_without_a_trace(redis_url: str) -> None:
    settings = make_settings("redis://127.0.0.1:1/0")
    async with api_client(settings) as client:
        resp = await client.get("/ui", headers=AUTH)
        assert resp.status == 503
        text = await resp.text()
        assert "text/html" in resp.headers["Content-Type"]
        assert "Traceback" not in text
        assert "Redis cannot be reached" in text
