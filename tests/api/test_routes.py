"""The intake API over real HTTP against a real Redis."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.fernet import Fernet
from redis.asyncio import Redis

from service.api.app import METRICS, REDIS_TIMEOUT_S, STORE, create_app
from service.api.server import QuietAppRunner
from service.core.config_values import hash_api_key
from service.core.models import ErrorInfo, State
from service.core.settings import Settings, load_settings
from service.core.text import SECRET_KEYS
from tests.helpers.redis_server import RedisServer

API_KEY = "alpha-secret-key"
OTHER_KEY = "beta-secret-key"
ENCRYPTION_KEY = Fernet.generate_key().decode()
SP = "6f1c3b9e-2a4d-4c8e-9b1f-0d2e3f4a5b6c"
BASE = "/v1/provisioning-requests"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
OTHER_AUTH = {"Authorization": f"Bearer {OTHER_KEY}"}
SECRET = "Sup3r-S3cret-Value-Never-Echo"


def make_settings(redis_url: str, *, encryption: bool = True, **overrides: Any) -> Settings:
    """Settings with two callers (alpha, beta) and, by default, an encryption key."""
    overrides.setdefault(
        "api_keys", f"alpha:{hash_api_key(API_KEY)},beta:{hash_api_key(OTHER_KEY)}"
    )
    # portal.example does not resolve: allow-list it past the callbackUrl SSRF check.
    overrides.setdefault("callback_allowlist", "portal.example")
    if encryption:
        # The field's env alias; ``encryption_keys=`` would be silently ignored.
        overrides["PROVISIONER_ENCRYPTION_KEY"] = ENCRYPTION_KEY
    return load_settings(redis_url=redis_url, **overrides)


@asynccontextmanager
async def api_client(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    """The real app on a random local port, with a client pointed at it."""
    client: TestClient[Any, Any] = TestClient(QuietTestServer(create_app(settings)))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


class QuietTestServer(TestServer):
    """aiohttp's test server on the connection handler `provisioner api` serves with."""

    async def _make_runner(self, **kwargs: Any) -> web.AppRunner:
        return QuietAppRunner(self.app, **kwargs)


def sp(n: int) -> str:
    """A distinct service principal id per n."""
    return f"00000000-0000-4000-8000-{n:012d}"


@pytest.fixture
async def client(redis: Redis, redis_url: str) -> AsyncIterator[TestClient[Any, Any]]:
    async with api_client(make_settings(redis_url)) as c:
        yield c


async def post(client: TestClient[Any, Any], body: Any, **headers: str) -> tuple[int, Any]:
    resp = await client.post(BASE, json=body, headers={**AUTH, **headers})
    return resp.status, await resp.json(content_type=None)


# intake ----------------------------------------------------------------------------------------
async def test_post_returns_202_location_and_record(client: TestClient[Any, Any]) -> None:
    body = {
        "servicePrincipalId": SP.upper(),
        "templateId": "scim",
        "callbackUrl": "https://portal.example/cb",
        "externalReference": "CHG0001",
        "metadata": {"team": "iam"},
        "start": False,
    }
    resp = await client.post(BASE, json=body, headers=AUTH)
    assert resp.status == 202
    data = await resp.json()
    assert resp.headers["Location"] == f"{BASE}/{data['id']}"
    assert len(data["id"]) == 32
    assert int(data["id"], 16) >= 0
    assert data["state"] == "queued"
    assert data["servicePrincipalId"] == SP  # normalised GUID
    assert data["templateId"] == "scim"
    assert data["requestedTemplateId"] == "scim"
    assert data["caller"] == "alpha"
    assert data["start"] is False
    assert data["externalReference"] == "CHG0001"
    assert data["metadata"] == {"team": "iam"}
    assert data["hasCredentials"] is False
    assert data["history"] == []
    assert data["error"] is None
    assert "retryUntil" not in data
    assert resp.headers["X-Request-Id"]

    got = await client.get(resp.headers["Location"], headers=AUTH)
    assert got.status == 200
    assert (await got.json())["id"] == data["id"]
    assert client.app is not None
    registry = client.app[METRICS].registry
    assert registry.get_sample_value("provisioner_requests_accepted_total", {"source": "api"}) == 1


async def test_job_is_queued_in_redis(client: TestClient[Any, Any], redis: Redis) -> None:
    status, data = await post(client, {"servicePrincipalId": SP})
    assert status == 202
    assert await redis.exists(f"arq:job:{data['id']}")
    assert await redis.zscore("provisioner:queue", data["id"]) is not None


async def test_in_flight_duplicate_returns_200_with_same_record(
    client: TestClient[Any, Any],
) -> None:
    status1, first = await post(client, {"servicePrincipalId": SP, "templateId": "t1"})
    resp = await client.post(
        BASE, json={"servicePrincipalId": SP, "templateId": "t1"}, headers=AUTH
    )
    assert (status1, resp.status) == (202, 200)
    assert (await resp.json())["id"] == first["id"]
    assert resp.headers["Location"] == f"{BASE}/{first['id']}"
    # Another template for the same principal is a new request.
    status3, third = await post(client, {"servicePrincipalId": SP, "templateId": "t2"})
    assert status3 == 202
    assert third["id"] != first["id"]


async def test_in_flight_with_another_body_is_409_naming_the_request(
    client: TestClient[Any, Any], redis: Redis
) -> None:
    body = {"servicePrincipalId": SP, "templateId": "t1", "start": False}
    status, first = await post(client, body)
    assert status == 202
    changes: list[dict[str, Any]] = [
        {"start": True},
        {"callbackUrl": "https://portal.example/cb"},
        {"credentials": [{"key": "SecretToken", "value": SECRET}]},
        {"externalReference": "CHG-2"},
        {"metadata": {"team": "other"}},
    ]
    for change in changes:
        status, problem = await post(client, {**body, **change}, **{"Idempotency-Key": "k-1"})
        assert status == 409, change
        assert problem["type"].endswith("/request-in-flight")
        assert first["id"] in problem["detail"]
        assert SECRET not in json.dumps(problem)
    # Nothing was dropped silently and nothing new was queued; the key was released.
    assert await redis.zcard("provisioner:queue") == 1
    status, same = await post(client, body, **{"Idempotency-Key": "k-1"})
    assert (status, same["id"]) == (200, first["id"])


async def test_in_flight_request_of_another_caller_queues_behind_it_unseen(
    client: TestClient[Any, Any], redis: Redis
) -> None:
    body = {"servicePrincipalId": SP, "externalReference": "ALPHA-ONLY"}
    status, first = await post(client, body)
    assert status == 202
    resp = await client.post(
        BASE,
        json={"servicePrincipalId": SP},
        headers={**OTHER_AUTH, "Idempotency-Key": "b-1"},
    )
    text = await resp.text()
    # The answer a new request gets: 202 and beta's own queued record, nothing of alpha's.
    assert resp.status == 202
    assert first["id"] not in text
    assert "ALPHA-ONLY" not in text
    second = json.loads(text)
    assert second["state"] == "queued"
    assert "queuedBehind" not in second
    # Queued behind alpha's: no job until that one ends, then it gets the slot and a job.
    assert not await redis.exists(f"arq:job:{second['id']}")
    again = await client.post(BASE, json={"servicePrincipalId": SP}, headers=OTHER_AUTH)
    assert (again.status, (await again.json())["id"]) == (200, second["id"])
    await _set_state(client, first["id"], State.SUCCEEDED)
    assert await redis.exists(f"arq:job:{second['id']}")
    assert (await redis.get(f"provisioner:queue:inflight:{SP}:*")).decode() == second["id"]


async def test_credentials_accepted_never_echoed_nor_stored_in_clear(
    client: TestClient[Any, Any], redis: Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    body = {"servicePrincipalId": SP, "credentials": [{"key": "SecretToken", "value": SECRET}]}
    resp = await client.post(BASE, json=body, headers=AUTH)
    text = await resp.text()
    assert resp.status == 202
    assert SECRET not in text
    assert json.loads(text)["hasCredentials"] is True
    rid = json.loads(text)["id"]
    for path in (f"{BASE}/{rid}", BASE):
        assert SECRET not in await (await client.get(path, headers=AUTH)).text()
    # A rejected body with the secret is not echoed either.
    bad = {"servicePrincipalId": "nope", "credentials": [{"key": "1bad", "value": SECRET}]}
    resp = await client.post(BASE, json=bad, headers=AUTH)
    assert resp.status == 422
    assert SECRET not in await resp.text()
    too_long = {
        "servicePrincipalId": SP,
        "credentials": [{"key": "SecretToken", "value": SECRET * 400}],
    }
    resp = await client.post(BASE, json=too_long, headers=AUTH)
    assert resp.status == 422
    assert SECRET not in await resp.text()
    # Nothing in Redis holds the plaintext.
    async for key in redis.scan_iter():
        kind = (await redis.type(key)).decode()
        if kind == "string":
            values = [await redis.get(key)]
        elif kind == "zset":
            values = [m for m, _ in await redis.zrange(key, 0, -1, withscores=True)]
        else:
            values = []
        for value in values:
            assert SECRET.encode() not in (value or b""), key
    captured = capsys.readouterr()
    assert SECRET not in captured.out + captured.err


async def test_credentials_without_encryption_key_rejected(redis: Redis, redis_url: str) -> None:
    async with api_client(make_settings(redis_url, encryption=False)) as c:
        body = {"servicePrincipalId": SP, "credentials": [{"key": "SecretToken", "value": SECRET}]}
        resp = await c.post(BASE, json=body, headers=AUTH)
        problem = await resp.json(content_type=None)
        assert resp.status == 422
        assert problem["errors"][0]["field"] == "credentials"
        assert "PROVISIONER_ENCRYPTION_KEY" in problem["errors"][0]["reason"]
        # Without credentials it still works.
        assert (await c.post(BASE, json={"servicePrincipalId": SP}, headers=AUTH)).status == 202


# bad input -------------------------------------------------------------------------------------
def _creds(n: int) -> list[dict[str, str]]:
    return [{"key": k, "value": "v"} for k in SECRET_KEYS[:n]]


@pytest.mark.parametrize(
    ("body", "field", "reason_part"),
    [
        ({"servicePrincipalId": SP, "start": "yes"}, "start", "true or false"),
        ({"servicePrincipalId": "not-a-guid"}, "servicePrincipalId", "GUID"),
        ({"servicePrincipalId": 42}, "servicePrincipalId", "string"),
        ({}, "servicePrincipalId", "required"),
        ({"servicePrincipalId": SP, "bogus": 1}, "bogus", "not a known field"),
        ({"servicePrincipalId": SP, "credentials": _creds(21)}, "credentials", "at most 20"),
        ({"servicePrincipalId": SP, "templateId": "../etc"}, "templateId", "pattern"),
        ({"servicePrincipalId": SP, "templateId": "a" * 129}, "templateId", "pattern"),
        ({"servicePrincipalId": SP, "callbackUrl": "http://x.example"}, "callbackUrl", "https"),
        (
            {
                "servicePrincipalId": SP,
                "credentials": [{"key": "SecretToken", "value": "v"}, {"key": "2", "value": "v"}],
            },
            "credentials[1].key",
            "synchronizationSecret",
        ),
        (
            {"servicePrincipalId": SP, "credentials": [{"key": "Password", "value": ""}]},
            "credentials[0].value",
            "at least 1",
        ),
        (
            {"servicePrincipalId": SP, "credentials": [{"key": "Password", "value": "x", "y": 1}]},
            "credentials[0].y",
            "not a known field",
        ),
        ({"servicePrincipalId": SP, "metadata": {"a b": 1}}, 'metadata["a b"]', "string"),
        ({"servicePrincipalId": SP, "metadata": []}, "metadata", "object"),
        ([SP], "body", "object"),
    ],
)
async def test_schema_violations_are_422_problems(
    client: TestClient[Any, Any], body: Any, field: str, reason_part: str
) -> None:
    resp = await client.post(BASE, json=body, headers=AUTH)
    assert resp.status == 422
    assert resp.content_type == "application/problem+json"
    problem = await resp.json(content_type=None)
    assert problem["status"] == 422
    assert problem["type"].endswith("validation-error")
    matching = [e for e in problem["errors"] if e["field"] == field]
    assert matching, problem["errors"]
    assert reason_part in matching[0]["reason"]


async def test_unknown_fields_are_all_named(client: TestClient[Any, Any]) -> None:
    _, problem = await post(client, {"servicePrincipalId": SP, "foo": 1, "barBaz": 2})
    assert {e["field"] for e in problem["errors"]} == {"foo", "barBaz"}


@pytest.mark.parametrize("raw", [b"{", b"", b"\xff\xfe", b'{"servicePrincipalId": }', b"nul"])
async def test_malformed_json_is_400(client: TestClient[Any, Any], raw: bytes) -> None:
    resp = await client.post(BASE, data=raw, headers={**AUTH, "Content-Type": "application/json"})
    assert resp.status == 400
    assert resp.content_type == "application/problem+json"
    assert (await resp.json(content_type=None))["title"] == "Malformed JSON"


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_wrong_content_type_is_415(client: TestClient[Any, Any], ctype: str | None) -> None:
    headers = dict(AUTH)
    if ctype:
        headers["Content-Type"] = ctype
    body = json.dumps({"servicePrincipalId": SP}).encode()
    resp = await client.post(BASE, data=body, headers=headers)
    assert resp.status == 415
    assert resp.content_type == "application/problem+json"


async def test_oversize_body_is_413_problem(client: TestClient[Any, Any]) -> None:
    body = {"servicePrincipalId": SP, "externalReference": "x", "pad": "a" * (65 * 1024)}
    resp = await client.post(BASE, json=body, headers=AUTH)
    assert resp.status == 413
    assert resp.content_type == "application/problem+json"
    assert (await resp.json(content_type=None))["status"] == 413


async def test_unknown_route_and_method_are_problems(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/v2/nothing", headers=AUTH)
    assert resp.status == 404
    assert resp.content_type == "application/problem+json"
    resp = await client.delete(BASE, headers=AUTH)
    assert resp.status == 405
    assert resp.content_type == "application/problem+json"
    assert resp.headers["Allow"] == "GET,HEAD,POST"
    problem = await resp.json(content_type=None)
    assert problem["detail"] == "DELETE is not allowed on this resource; allowed: GET, HEAD, POST."


async def test_nul_byte_in_a_header_is_400_with_one_warning_line(
    client: TestClient[Any, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer abc\x00def\r\n\r\n")
    await writer.drain()
    head = await reader.readline()
    assert head.startswith(b"HTTP/1.")
    assert b" 400 " in head
    writer.close()
    await writer.wait_closed()
    out = capsys.readouterr()
    text = out.out + out.err
    lines = [line for line in text.splitlines() if "http_request_unparseable" in line]
    assert len(lines) == 1, text
    assert "warning" in lines[0]
    assert "BadHttpMessage" in lines[0]
    assert "Traceback" not in text
    assert "abc" not in text  # the header's value is not logged
    assert "Error handling request" not in text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"externalReference": "CHG\x00001"}, "externalReference"),
        ({"externalReference": "CHG\x1b[31m"}, "externalReference"),
        ({"externalReference": "CHG\x07"}, "externalReference"),
        ({"externalReference": "CHG\x85"}, "externalReference"),  # C1 (NEL)
        ({"externalReference": "abc\u202edcba"}, "externalReference"),
        ({"externalReference": "abc\u2066x\u2069"}, "externalReference"),
        ({"metadata": {"team": "iam\x00"}}, "metadata.team"),
        ({"metadata": {"team": "\u202bx"}}, "metadata.team"),
        ({"metadata": {"te\x1bam": "x"}}, "metadata"),
        ({"servicePrincipalId": "{" + SP + "}"}, "servicePrincipalId"),
        ({"servicePrincipalId": "urn:uuid:" + SP}, "servicePrincipalId"),
        ({"servicePrincipalId": SP.replace("-", "")}, "servicePrincipalId"),
        ({"servicePrincipalId": "\uff16" + SP[1:]}, "servicePrincipalId"),  # full-width 6
        ({"credentials": [{"key": "clientsecret", "value": "v"}]}, "credentials[0].key"),
    ],
)
async def test_control_characters_and_other_guid_forms_are_refused(
    client: TestClient[Any, Any], redis: Redis, body: dict[str, Any], field: str
) -> None:
    status, problem = await post(client, {"servicePrincipalId": SP, **body})
    assert status == 422
    assert [e["field"] for e in problem["errors"]] == [field]
    assert await redis.zcard("provisioner:queue") == 0


async def test_unknown_credential_key_names_near_matches(client: TestClient[Any, Any]) -> None:
    creds = [{"key": "clientsecret", "value": SECRET}, {"key": "Nope", "value": SECRET}]
    status, problem = await post(client, {"servicePrincipalId": SP, "credentials": creds})
    assert status == 422
    reasons = {e["field"]: e["reason"] for e in problem["errors"]}
    assert "did you mean 'ClientSecret'" in reasons["credentials[0].key"]
    assert "synchronizationSecret" in reasons["credentials[1].key"]
    assert SECRET not in json.dumps(problem)


async def test_bad_idempotency_key_header(client: TestClient[Any, Any]) -> None:
    status, problem = await post(
        client, {"servicePrincipalId": SP}, **{"Idempotency-Key": "k" * 256}
    )
    assert status == 400
    assert problem["errors"][0]["field"] == "Idempotency-Key"


# reads -----------------------------------------------------------------------------------------
async def test_get_unknown_and_foreign_records_are_404(client: TestClient[Any, Any]) -> None:
    _, record = await post(client, {"servicePrincipalId": SP})
    for path, headers in [
        (f"{BASE}/{record['id']}", OTHER_AUTH),
        (f"{BASE}/{'0' * 32}", AUTH),
        (f"{BASE}/..%2F..%2Fetc", AUTH),
        (f"{BASE}/{record['id']}/cancel", OTHER_AUTH),
    ]:
        method = client.post if path.endswith("cancel") else client.get
        resp = await method(path, headers=headers)
        assert resp.status == 404, path
        assert resp.content_type == "application/problem+json"


async def test_list_filters_and_pages_every_record_once(client: TestClient[Any, Any]) -> None:
    created: set[str] = set()
    for i in range(25):
        status, rec = await post(client, {"servicePrincipalId": sp(i)})
        assert status == 202
        created.add(rec["id"])
    await post(client, {"servicePrincipalId": sp(99)})  # noise from another caller below
    resp = await client.post(BASE, json={"servicePrincipalId": sp(98)}, headers=OTHER_AUTH)
    assert resp.status == 202
    foreign = (await resp.json())["id"]

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": "10", "state": "queued"}
        if cursor:
            params["cursor"] = cursor
        resp = await client.get(BASE, params=params, headers=AUTH)
        assert resp.status == 200
        page = await resp.json()
        assert len(page["items"]) <= 10
        seen += [r["id"] for r in page["items"]]
        pages += 1
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 26  # 25 + the sp(99) one, each exactly once
    assert created <= set(seen)
    assert foreign not in seen
    assert pages == 3

    resp = await client.get(BASE, params={"servicePrincipalId": sp(3)}, headers=AUTH)
    items = (await resp.json())["items"]
    assert [r["servicePrincipalId"] for r in items] == [sp(3)]
    resp = await client.get(BASE, params={"state": "failed"}, headers=AUTH)
    assert (await resp.json()) == {"items": [], "nextCursor": None}
    resp = await client.get(BASE, params={"servicePrincipalId": sp(98)}, headers=AUTH)
    assert (await resp.json())["items"] == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"state": "done"}, "state"),
        ({"servicePrincipalId": "xyz"}, "servicePrincipalId"),
        ({"cursor": "!!not-a-cursor!!"}, "cursor"),
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"status": "queued"}, "status"),
    ],
)
async def test_list_bad_parameters_are_422(
    client: TestClient[Any, Any], params: dict[str, str], field: str
) -> None:
    resp = await client.get(BASE, params=params, headers=AUTH)
    assert resp.status == 422
    problem = await resp.json(content_type=None)
    assert problem["errors"][0]["field"] == field


# idempotency -----------------------------------------------------------------------------------
async def test_idempotency_key_replays_and_rejects_other_body(
    client: TestClient[Any, Any],
) -> None:
    key = {"Idempotency-Key": "ticket-123"}
    status1, first = await post(client, {"servicePrincipalId": SP}, **key)
    status2, second = await post(client, {"servicePrincipalId": SP}, **key)
    assert (status1, status2) == (202, 202)
    assert first["id"] == second["id"]
    status3, problem = await post(client, {"servicePrincipalId": sp(1)}, **key)
    assert status3 == 422
    assert problem["type"].endswith("idempotency-key-reused")
    # Keys are per caller: beta may use the same key for its own request.
    resp = await client.post(
        BASE, json={"servicePrincipalId": sp(2)}, headers={**OTHER_AUTH, **key}
    )
    assert resp.status == 202


async def test_idempotency_key_with_invalid_body_is_not_consumed(
    client: TestClient[Any, Any],
) -> None:
    key = {"Idempotency-Key": "k-1"}
    status, _ = await post(client, {"servicePrincipalId": "bad"}, **key)
    assert status == 422
    status, _ = await post(client, {"servicePrincipalId": SP}, **key)
    assert status == 202


async def test_concurrent_posts_with_one_key_make_one_record(
    client: TestClient[Any, Any], redis: Redis
) -> None:
    body = {"servicePrincipalId": SP, "templateId": "t"}
    results = await asyncio.gather(
        *(post(client, body, **{"Idempotency-Key": "same"}) for _ in range(20))
    )
    # The key is read and completed in the accept script: no request sees it pending, every
    # one gets the first answer.
    assert [s for s, _ in results] == [202] * 20
    assert len({r["id"] for _, r in results}) == 1
    assert len([k async for k in redis.scan_iter("provisioner:queue:req:*")]) == 1


# cancel and retry ------------------------------------------------------------------------------
async def _set_state(client: TestClient[Any, Any], rid: str, state: State) -> None:
    assert client.app is not None
    store = client.app[STORE]
    record = await store.get(rid)
    assert record is not None
    record.state = state
    if state is State.FAILED:
        record.error = ErrorInfo(code="GraphRequestFailed", message="boom")
    await store.save(record)


async def test_cancel_queued_then_idempotent(client: TestClient[Any, Any], redis: Redis) -> None:
    _, rec = await post(client, {"servicePrincipalId": SP})
    resp = await client.post(f"{BASE}/{rec['id']}/cancel", headers=AUTH)
    assert resp.status == 202
    data = await resp.json()
    assert data["state"] == "cancelled"
    assert data["history"][-1]["outcome"] == "cancelled"
    resp = await client.post(f"{BASE}/{rec['id']}/cancel", headers=AUTH)
    assert resp.status == 200
    # The in-flight claim is released: a new request for the app starts.
    status, again = await post(client, {"servicePrincipalId": SP})
    assert status == 202
    assert again["id"] != rec["id"]
    resp = await client.post(f"{BASE}/{rec['id']}/retry", headers=AUTH)
    assert resp.status == 409


async def test_cancel_running_sets_flag(client: TestClient[Any, Any]) -> None:
    _, rec = await post(client, {"servicePrincipalId": SP})
    await _set_state(client, rec["id"], State.RUNNING)
    resp = await client.post(f"{BASE}/{rec['id']}/cancel", headers=AUTH)
    assert resp.status == 202
    assert (await resp.json())["state"] == "running"
    assert client.app is not None
    assert await client.app[STORE].cancel_requested(rec["id"])


async def test_cancel_finished_is_409(client: TestClient[Any, Any]) -> None:
    _, rec = await post(client, {"servicePrincipalId": SP})
    await _set_state(client, rec["id"], State.SUCCEEDED)
    resp = await client.post(f"{BASE}/{rec['id']}/cancel", headers=AUTH)
    assert resp.status == 409
    assert resp.content_type == "application/problem+json"


async def test_retry_failed_requeues(client: TestClient[Any, Any], redis: Redis) -> None:
    _, rec = await post(client, {"servicePrincipalId": SP})
    resp = await client.post(f"{BASE}/{rec['id']}/retry", headers=AUTH)
    assert resp.status == 200  # still queued: nothing to do
    await redis.delete(f"arq:job:{rec['id']}")  # as if the worker had run it
    await _set_state(client, rec["id"], State.FAILED)
    resp = await client.post(f"{BASE}/{rec['id']}/retry", headers=AUTH)
    assert resp.status == 202
    data = await resp.json()
    assert data["state"] == "queued"
    assert data["error"] is None
    assert data["history"][-1]["outcome"] == "requeued"
    assert await redis.exists(f"arq:job:{rec['id']}")
    await _set_state(client, rec["id"], State.SUCCEEDED)
    assert (await client.post(f"{BASE}/{rec['id']}/retry", headers=AUTH)).status == 409


# operations ------------------------------------------------------------------------------------
async def test_health_ready_metrics_need_no_auth(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}
    resp = await client.get("/readyz")
    assert resp.status == 200
    await post(client, {"servicePrincipalId": SP})
    await client.get(f"{BASE}/{'a' * 32}", headers=AUTH)
    resp = await client.get("/metrics")
    text = await resp.text()
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert 'provisioner_requests_accepted_total{source="api"} 1.0' in text
    assert "provisioner_queue_depth 1.0" in text
    assert (
        'provisioner_http_requests_total{method="POST",route="/v1/provisioning-requests",'
        'status="202"} 1' in text
    )
    assert 'route="/v1/provisioning-requests/{id}",status="404"} 1' in text


async def test_request_id_echoed_or_generated(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert resp.headers["X-Request-Id"] == "abc-123"
    resp = await client.get("/healthz", headers={"X-Request-Id": "bad id\twith junk" * 20})
    assert resp.headers["X-Request-Id"] != "bad id"
    assert len(resp.headers["X-Request-Id"]) == 32


async def test_unexpected_error_is_generic_500(client: TestClient[Any, Any]) -> None:
    assert client.app is not None
    store = client.app[STORE]

    async def broken(request_id: str) -> None:
        raise RuntimeError("internal detail that must not leak")

    store.get = broken
    resp = await client.get(f"{BASE}/{'b' * 32}", headers={**AUTH, "X-Request-Id": "rid-500"})
    text = await resp.text()
    assert resp.status == 500
    assert resp.content_type == "application/problem+json"
    assert "internal detail" not in text
    assert "Traceback" not in text
    assert "rid-500" in json.loads(text)["detail"]


async def test_redis_down_gives_fast_503(redis_url: str, tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "own-redis")
    server.start()
    try:
        async with api_client(make_settings(server.url)) as c:
            assert (await c.get("/readyz")).status == 200
            status, _ = await post(c, {"servicePrincipalId": SP})
            assert status == 202
            server.kill()
            for method, path, body in [
                ("GET", "/readyz", None),
                ("POST", BASE, {"servicePrincipalId": sp(1)}),
                ("GET", BASE, None),
                ("POST", BASE, {"servicePrincipalId": sp(2)}),
            ]:
                started = time.monotonic()
                resp = await c.request(method, path, json=body, headers=AUTH)
                elapsed = time.monotonic() - started
                assert resp.status == 503, (method, path)
                assert resp.headers["Retry-After"] == "5"
                assert resp.content_type == "application/problem+json"
                # one Redis timeout at most, never a retry after it (the rest: a loaded machine)
                assert elapsed < 2 * REDIS_TIMEOUT_S, (method, path, elapsed)
            resp = await c.get("/healthz")
            assert resp.status == 200
    finally:
        server.stop()


async def test_hung_redis_gives_a_fast_503(redis_url: str, tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "hung-redis")
    server.start()
    assert server.proc is not None
    try:
        async with api_client(make_settings(server.url)) as c:
            assert (await c.get("/readyz")).status == 200
            os.kill(server.proc.pid, signal.SIGSTOP)  # accepts connections, never answers
            started = time.monotonic()
            resp = await c.get("/readyz")
            assert resp.status == 503
            assert resp.headers["Retry-After"] == "5"
            # one Redis timeout, not a retry after it (the rest: a loaded machine)
            assert time.monotonic() - started < 2 * REDIS_TIMEOUT_S
    finally:
        if server.proc is not None and server.proc.poll() is None:
            os.kill(server.proc.pid, signal.SIGCONT)
        server.stop()
