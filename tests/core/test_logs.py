"""Logging: JSON lines on stdout, one http_request line per request, no secrets."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from aiohttp import web
from redis.asyncio import Redis

from service.api.middleware import request_id_from
from service.core.logs import configure_logging
from service.core.settings import load_settings
from tests.api.test_routes import API_KEY, AUTH, BASE, SECRET, SP, api_client, make_settings


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root.handlers[:] = handlers
    root.setLevel(level)


def _lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_json_lines_with_level_timestamp_and_context(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(load_settings(log_format="json"))
    structlog.contextvars.bind_contextvars(job_id="j1")
    structlog.get_logger("t").info("hello", n=1)
    logging.getLogger("arq.worker").warning("stdlib %s", "too")
    lines = _lines(capsys.readouterr().out)
    assert lines[0]["event"] == "hello"
    assert lines[0]["n"] == 1
    assert lines[0]["job_id"] == "j1"
    assert lines[0]["level"] == "info"
    assert lines[0]["timestamp"].endswith("Z")
    assert lines[1]["event"] == "stdlib too"
    assert lines[1]["level"] == "warning"
    assert lines[1]["job_id"] == "j1"
    assert lines[1]["logger"] == "arq.worker"


def test_level_filters(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(load_settings(log_format="json", log_level="WARNING"))
    structlog.get_logger().info("quiet")
    logging.getLogger("x").info("quiet too")
    structlog.get_logger().error("loud")
    assert [line["event"] for line in _lines(capsys.readouterr().out)] == ["loud"]


def test_exceptions_are_structured(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(load_settings(log_format="json"))
    try:
        raise ValueError("bad")
    except ValueError:
        structlog.get_logger().exception("failed")
    line = _lines(capsys.readouterr().out)[0]
    assert line["event"] == "failed"
    assert line["exception"][0]["exc_type"] == "ValueError"


def test_console_format_and_auto_on_a_pipe(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(load_settings(log_format="console"))
    structlog.get_logger().info("pretty", a=1)
    out = capsys.readouterr().out
    assert "pretty" in out
    assert not out.lstrip().startswith("{")
    configure_logging(load_settings(log_format="auto"))  # captured stdout is not a TTY
    structlog.get_logger().info("machine")
    assert _lines(capsys.readouterr().out)[0]["event"] == "machine"


def test_request_id_from() -> None:
    assert request_id_from("abc-123:x.y_z") == "abc-123:x.y_z"
    for bad in (None, "", "a b", "x" * 129, "é", "a\nb"):
        generated = request_id_from(bad)
        assert generated != bad
        assert len(generated) == 32


async def test_one_line_per_request_without_secrets(
    redis: Redis, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(load_settings(log_format="json"))
    async with api_client(make_settings(redis_url, log_format="json")) as client:
        body = {"servicePrincipalId": SP, "credentials": [{"key": "SecretToken", "value": SECRET}]}
        resp = await client.post(BASE, json=body, headers={**AUTH, "X-Request-Id": "rq-42"})
        assert resp.status == 202
        assert resp.headers["X-Request-Id"] == "rq-42"
        rid = (await resp.json())["id"]
        await client.get(f"{BASE}/{rid}", headers=AUTH)
        bad = {"servicePrincipalId": SP, "credentials": [{"key": "!", "value": SECRET}]}
        await client.post(BASE, json=bad, headers=AUTH)
        await client.get(BASE, headers={"Authorization": "Bearer nope"})
    out = capsys.readouterr().out
    assert SECRET not in out
    assert API_KEY not in out
    assert "nope" not in out
    lines = [line for line in _lines(out) if line["event"] == "http_request"]
    assert len(lines) == 4
    first = lines[0]
    assert first["request_id"] == "rq-42"
    assert first["method"] == "POST"
    assert first["path"] == BASE
    assert first["status"] == 202
    assert first["caller"] == "alpha"
    assert isinstance(first["duration_ms"], float)
    assert lines[1]["path"] == BASE + "/{id}"
    assert lines[1]["status"] == 200
    assert lines[2]["status"] == 422
    assert lines[3]["status"] == 401
    assert lines[3]["caller"] is None


async def test_request_id_is_bound_for_handler_logs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from service.api.middleware import request_middleware

    configure_logging(load_settings(log_format="json"))

    async def handler(request: web.Request) -> web.Response:
        structlog.get_logger().info("inside")
        return web.Response(text="ok")

    app = web.Application(middlewares=[request_middleware()])
    app.router.add_get("/x", handler)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    try:
        resp = await client.get("/x", headers={"X-Request-Id": "bound-1"})
        assert resp.status == 200
    finally:
        await client.close()
    lines = _lines(capsys.readouterr().out)
    inside = next(line for line in lines if line["event"] == "inside")
    assert inside["request_id"] == "bound-1"
    assert structlog.contextvars.get_contextvars().get("request_id") is None
