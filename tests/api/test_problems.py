"""problem+json documents: shape, JSON paths, reasons that never echo input, the middleware."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import ValidationError

from service.api.middleware import request_middleware
from service.api.problems import (
    Problem,
    field_path,
    problem_answer,
    problem_response,
    validation_problem,
)
from service.core.errors import StoreUnavailable
from service.core.request import ProvisionRequest

SECRET = "hunter2-do-not-echo"


def _errors(raw: dict[str, Any]) -> Problem:
    with pytest.raises(ValidationError) as info:
        ProvisionRequest.model_validate_json(json.dumps(raw))
    return validation_problem(info.value)


@pytest.mark.parametrize(
    ("loc", "path"),
    [
        (("servicePrincipalId",), "servicePrincipalId"),
        (("credentials", 2, "key"), "credentials[2].key"),
        (("metadata", "a b"), 'metadata["a b"]'),
        ((), "body"),
    ],
)
def test_field_path(loc: tuple[int | str, ...], path: str) -> None:
    assert field_path(loc) == path


def test_problem_response_shape() -> None:
    resp = problem_response(409, "Conflict", "nope", headers={"Retry-After": "1"})
    assert resp.content_type == "application/problem+json"
    assert resp.headers["Retry-After"] == "1"
    assert resp.body is not None
    body = json.loads(bytes(resp.body))  # type: ignore[arg-type]
    assert body == {
        "type": "https://provisioner.invalid/problems/conflict",
        "title": "Conflict",
        "status": 409,
        "detail": "nope",
    }


def test_validation_reasons_never_echo_values() -> None:
    problem = _errors(
        {
            "servicePrincipalId": SECRET,
            "templateId": SECRET + "/",
            "callbackUrl": "http://" + SECRET,
            "externalReference": "",
            "credentials": [{"key": SECRET + "!", "value": SECRET * 1000}],
            "metadata": {"k": SECRET * 30},
            "start": SECRET,
        }
    )
    assert problem.status == 422
    fields = {e["field"] for e in problem.errors}
    assert {
        "servicePrincipalId",
        "templateId",
        "callbackUrl",
        "externalReference",
        "credentials[0].key",
        "credentials[0].value",
        "metadata.k",
        "start",
    } <= fields
    assert SECRET not in json.dumps(problem.errors) + problem.detail


def test_malformed_json_is_400() -> None:
    with pytest.raises(ValidationError) as info:
        ProvisionRequest.model_validate_json(b'{"a": ' + SECRET.encode())
    problem = validation_problem(info.value)
    assert problem.status == 400
    assert SECRET not in problem.detail


def test_duplicate_credential_keys_reason() -> None:
    sp = "00000000-0000-4000-8000-000000000000"
    creds = [{"key": "UserName", "value": "1"}, {"key": "UserName", "value": "2"}]
    problem = _errors({"servicePrincipalId": sp, "credentials": creds})
    assert problem.errors == [
        {"field": "credentials", "reason": "duplicate credential keys: UserName"}
    ]


async def _client(handler: Any) -> TestClient[Any, Any]:
    app = web.Application(middlewares=[request_middleware(problem_answer)])
    app.router.add_get("/x", handler)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest.mark.parametrize(
    ("exc", "status", "header"),
    [
        (Problem(418, "Teapot", "short and stout"), 418, None),
        (web.HTTPForbidden(), 403, None),
        (web.HTTPMethodNotAllowed("POST", ["GET"]), 405, "Allow"),
        (StoreUnavailable("Redis is unreachable"), 503, "Retry-After"),
        (RuntimeError(SECRET), 500, None),
    ],
)
async def test_middleware_turns_errors_into_problems(
    exc: Exception, status: int, header: str | None
) -> None:
    async def handler(request: web.Request) -> web.Response:
        raise exc

    client = await _client(handler)
    try:
        resp = await client.get("/x", headers={"X-Request-Id": "req-1"})
        text = await resp.text()
        assert resp.status == status
        assert resp.content_type == "application/problem+json"
        assert json.loads(text)["status"] == status
        assert SECRET not in text
        assert "Traceback" not in text
        if header:
            assert resp.headers[header]
        if status == 500:
            assert "req-1" in json.loads(text)["detail"]
    finally:
        await client.close()


async def test_redirects_pass_through() -> None:
    async def handler(request: web.Request) -> web.Response:
        raise web.HTTPFound("/elsewhere")

    client = await _client(handler)
    try:
        resp = await client.get("/x", allow_redirects=False)
        assert resp.status == 302
        assert resp.headers["Location"] == "/elsewhere"
    finally:
        await client.close()
