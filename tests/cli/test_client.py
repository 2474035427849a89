"""The command-line client over real HTTP to the real API (in this test's loop, called from a
thread as the CLI blocks): answers, problems in the API's own words, an unreachable API."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from service.cli.client import ApiError, Client
from tests.api.test_routes import API_KEY
from tests.helpers.redis_server import free_port

SP = "15331f0e-bdc6-41e2-afa0-a4c9abfe90b3"


async def _call(client: Client, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    return await asyncio.to_thread(client.call, method, path, body)


async def test_a_request_is_posted_and_read_back(base: str) -> None:
    client = Client(base + "/", API_KEY)
    status, record = await _call(
        client, "POST", "/v1/provisioning-requests", {"servicePrincipalId": SP}
    )
    assert status == 202
    status, again = await _call(client, "GET", f"/v1/provisioning-requests/{record['id']}")
    assert (status, again["id"], again["state"]) == (200, record["id"], "queued")


async def test_a_problem_is_told_with_its_status_title_and_fields(base: str) -> None:
    client = Client(base, API_KEY)
    with pytest.raises(ApiError) as info:
        await _call(client, "POST", "/v1/provisioning-requests", {"servicePrincipalId": "nope"})
    first, *fields = str(info.value).splitlines()
    assert first.startswith("422 ")
    assert any(line.strip().startswith("servicePrincipalId:") for line in fields)


async def test_a_wrong_key_is_a_401_problem(base: str) -> None:
    with pytest.raises(ApiError, match=r"^401 "):
        await _call(Client(base, "pk_not-a-key"), "GET", "/v1/provisioning-requests")


async def test_an_unreachable_api_is_named() -> None:
    base = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ApiError, match="cannot reach the API at"):
        await _call(Client(base, API_KEY), "GET", "/v1/provisioning-requests")


def test_no_key_is_refused_before_any_call() -> None:
    with pytest.raises(ApiError, match="no API key"):
        Client("http://127.0.0.1:1", None)
