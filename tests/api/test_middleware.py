"""The outermost middleware over real HTTP: a request id for every request (the caller's when
plain), bound into the log lines written meanwhile, and one ``http_request`` line per request
naming the route template, the status and the caller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from service.api.middleware import CALLER, request_id_from, request_middleware


async def _hello(request: web.Request) -> web.Response:
    request[CALLER] = "alpha"
    structlog.get_logger("test").info("inside")
    return web.json_response({"id": request.match_info["id"]})


async def _gone(request: web.Request) -> web.Response:
    raise web.HTTPGone


@pytest.fixture
async def client() -> AsyncIterator[TestClient[Any, Any]]:
    app = web.Application(middlewares=[request_middleware()])
    app.router.add_get("/things/{id}", _hello)
    app.router.add_get("/gone", _gone)
    async with TestClient(TestServer(app)) as c:
        yield c


async def test_the_callers_plain_id_is_echoed_and_bound_into_every_line(
    client: TestClient[Any, Any],
) -> None:
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        resp = await client.get("/things/42", headers={"X-Request-Id": "req-1.a:b"})
    assert resp.headers["X-Request-Id"] == "req-1.a:b"
    inside = next(e for e in logs if e["event"] == "inside")
    line = next(e for e in logs if e["event"] == "http_request")
    assert inside["request_id"] == line["request_id"] == "req-1.a:b"
    assert (line["path"], line["status"], line["caller"]) == ("/things/{id}", 200, "alpha")


async def test_an_unsafe_or_long_id_is_replaced_and_errors_are_logged_with_their_status(
    client: TestClient[Any, Any],
) -> None:
    with capture_logs() as logs:
        resp = await client.get("/gone", headers={"X-Request-Id": "bad id\twith junk"})
        missing = await client.get("/nowhere/" + "x" * 300)
    assert resp.status == 410
    lines = [e for e in logs if e["event"] == "http_request"]
    assert [e["status"] for e in lines] == [410, 404]
    assert lines[0]["path"] == "/gone"
    assert len(lines[1]["path"]) == 200  # unmatched: the raw path, cut
    assert missing.status == 404


def test_request_ids_kept_and_made() -> None:
    assert request_id_from("abc-123") == "abc-123"
    assert request_id_from("x" * 129) != "x" * 129
    fresh = request_id_from(None)
    assert len(fresh) == 32
    assert fresh != request_id_from(None)
