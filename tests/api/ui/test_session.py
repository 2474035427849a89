"""Status-page sessions over real HTTP against a real Redis: sign-in, the cookie, CSRF, sessions
that end with their key's revocation or rotation (keys file: mtime and SIGHUP)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from service.api.app import create_app
from service.api.state import AUTHENTICATORS
from service.api.ui.session import SESSION_COOKIE, SESSION_TTL_S, SessionAuthenticator
from service.core.config_values import hash_api_key
from tests.api.test_routes import API_KEY, AUTH, OTHER_KEY, api_client, make_settings
from tests.helpers.ui import K, login, origin

ROTATED_KEY = "alpha-rotated-secret-key"


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
    assert "signed in as" not in text
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
    # Redis holds the caller and a fingerprint of the key under a hash of the session id, with
    # the TTL; never the key, its configured digest or the session id.
    keys = [k.decode() async for k in redis.scan_iter(match=K.ui_session("*"))]
    assert len(keys) == 1
    assert session_id not in keys[0]
    stored = await redis.get(keys[0])
    session = json.loads(stored)
    assert session["caller"] == "alpha"
    assert len(session["key"]) == 64
    assert hash_api_key(API_KEY).encode() not in stored
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
        assert "text/html" in resp.headers["Content-Type"]
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


async def test_a_session_planted_in_redis_without_a_key_fingerprint_is_refused(
    client: TestClient[Any, Any], redis: Redis
) -> None:
    # The form sessions had before they remembered their key: the caller name alone.
    await login(client)
    async for key in redis.scan_iter(match=K.ui_session("*")):
        await redis.set(key, "alpha")
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
        assert "lacks the &#39;read&#39; permission" in await resp.text()
        page = await client.get("/ui", headers=AUTH, allow_redirects=False)
        assert page.status == 403
        assert "text/html" in page.headers["Content-Type"]
        assert (await login(client, OTHER_KEY)).status == 303


# revocation and rotation ---------------------------------------------------------------------
def write_keys(path: Path, *entries: tuple[str, str]) -> None:
    """Write a keys file atomically and move its mtime on, even on a coarse filesystem."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(f"{name}:{hash_api_key(key)}\n" for name, key in entries))
    os.replace(tmp, path)
    moved = (time.time_ns() // 10**9 + len(entries) + 10) * 10**9
    os.utime(path, ns=(moved, moved + path.stat().st_size))


async def test_revoking_the_key_in_the_keys_file_ends_its_sessions(
    tmp_path: Path, redis: Redis, redis_url: str
) -> None:
    path = tmp_path / "keys"
    write_keys(path, ("alpha", API_KEY), ("beta", OTHER_KEY))
    settings = make_settings(redis_url, api_keys="", api_keys_file=path, api_keys_reload_s=0)
    async with api_client(settings) as client:
        assert (await login(client)).status == 303
        assert (await client.get("/ui", allow_redirects=False)).status == 200
        write_keys(path, ("beta", OTHER_KEY))  # alpha's key revoked
        resp = await client.get("/ui", allow_redirects=False)
        assert resp.status == 303
        assert resp.headers["Location"] == "/ui/login"
        assert (await client.get("/ui/counters", allow_redirects=False)).status == 401
        # The session is gone from Redis, and the revoked key cannot sign in again.
        assert [k async for k in redis.scan_iter(match=K.ui_session("*"))] == []
        assert (await login(client)).status == 401
        # Another caller's session is untouched by alpha's revocation.
        assert (await login(client, OTHER_KEY)).status == 303
        assert (await client.get("/ui", allow_redirects=False)).status == 200


async def test_rotating_the_key_ends_sessions_of_the_old_one_on_sighup(
    tmp_path: Path, redis: Redis, redis_url: str
) -> None:
    path = tmp_path / "keys"
    write_keys(path, ("alpha", API_KEY))
    settings = make_settings(redis_url, api_keys="", api_keys_file=path, api_keys_reload_s=3600)
    async with api_client(settings) as client:
        assert (await login(client)).status == 303
        write_keys(path, ("alpha", ROTATED_KEY))  # same caller, new key
        assert (await client.get("/ui", allow_redirects=False)).status == 200  # not re-read yet
        [sessions] = [a for a in client.app[AUTHENTICATORS] if isinstance(a, SessionAuthenticator)]
        loop = asyncio.get_running_loop()
        assert signal.SIGHUP in getattr(loop, "_signal_handlers", {})  # else SIGHUP kills us
        os.kill(os.getpid(), signal.SIGHUP)
        async with asyncio.timeout(30):  # only against a hang
            while sessions.key_for(API_KEY) is not None:  # the handler runs on the loop
                await asyncio.sleep(0.01)
        resp = await client.get("/ui", allow_redirects=False)
        assert resp.status == 303
        assert resp.headers["Location"] == "/ui/login"
        assert (await login(client, ROTATED_KEY)).status == 303
        page = await client.get("/ui", allow_redirects=False)
        assert page.status == 200
        assert "signed in as <b>alpha</b>" in await page.text()


@pytest.mark.parametrize("stored", [b"{}", b"[1]", b"not json", b'{"caller": "alpha", "key": 1}'])
async def test_a_malformed_session_entry_is_no_session(
    client: TestClient[Any, Any], redis: Redis, stored: bytes
) -> None:
    await login(client)
    async for key in redis.scan_iter(match=K.ui_session("*")):
        await redis.set(key, stored)
    assert (await client.get("/ui", allow_redirects=False)).status == 303
