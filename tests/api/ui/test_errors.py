"""Errors on /ui: the API's one mapping (problem_for), shown as HTML pages, never a trace."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.api.test_routes import AUTH, api_client, make_settings
from tests.helpers.ui import login


async def test_redis_down_is_an_html_503_without_a_trace(redis_url: str) -> None:
    settings = make_settings("redis://127.0.0.1:1/0")
    async with api_client(settings) as client:
        resp = await client.get("/ui", headers=AUTH)
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "5"
        text = await resp.text()
        assert "text/html" in resp.headers["Content-Type"]
        assert "Traceback" not in text
        # The same title and detail as the API's problem document.
        assert "Service Unavailable" in text
        assert "The request store (Redis) cannot be reached" in text
        api = await client.get("/v1/provisioning-requests", headers=AUTH)
        assert api.status == 503
        assert (await api.json())["detail"] in text
        # The counters stay JSON for the page's script.
        counters = await client.get("/ui/counters", headers=AUTH)
        assert counters.status == 503
        assert counters.content_type == "application/problem+json"


async def test_unknown_pages_and_methods_are_html_pages(client: TestClient[Any, Any]) -> None:
    await login(client)
    missing = await client.get("/ui/nowhere")
    assert missing.status == 404
    assert "text/html" in missing.headers["Content-Type"]
    assert "Not Found" in await missing.text()
    wrong = await client.put("/ui/login")
    assert wrong.status == 405
    assert "text/html" in wrong.headers["Content-Type"]
    assert "POST" in wrong.headers["Allow"]
    for resp in (missing, wrong):
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert "default-src 'none'" in resp.headers["Content-Security-Policy"]


async def test_api_paths_keep_problem_json(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/v1/nowhere", headers=AUTH)
    assert resp.status == 404
    assert resp.content_type == "application/problem+json"
