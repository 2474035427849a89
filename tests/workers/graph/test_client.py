"""The Graph client against the sandbox: typed errors, paging, ids and the one token refresh."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from service.core.errors import GraphError, GraphTransportError
from service.core.settings import Settings, load_settings
from tests.helpers.harness import SALESFORCE, SCIM
from tests.helpers.proxy import ConnectProxy
from tests.helpers.sandbox import SandboxProcess
from workers.graph.client import GraphClient
from workers.graph.tls import new_session
from workers.graph.token import TokenProvider

UNKNOWN_SP = "0b5e2c7a-1111-4222-8333-944455556666"


def _settings(sandbox: SandboxProcess) -> Settings:
    env = {k.removeprefix("PROVISIONER_").lower(): v for k, v in sandbox.env().items()}
    return load_settings(**env)


@pytest.fixture
async def graph(fresh_sandbox: SandboxProcess) -> AsyncIterator[GraphClient]:
    settings = _settings(fresh_sandbox)
    session = new_session(settings)
    tokens = await TokenProvider.create(settings)
    yield GraphClient(session, settings.graph_url, tokens)
    await session.close()


async def test_lists_templates(graph: GraphClient) -> None:
    resp = await graph.list_templates(SCIM, "crid-1")
    assert sorted(str(t.id) for t in resp.value) == ["scim", "scimV2"]
    assert resp.status == 200
    assert resp.request_id
    assert resp.client_request_id == "crid-1"


async def test_paging_returns_every_item_once(
    graph: GraphClient, fresh_sandbox: SandboxProcess
) -> None:
    fresh_sandbox.patch_faults({"page_size": 1})
    templates = (await graph.list_templates(SCIM, "crid")).value
    assert sorted(str(t.id) for t in templates) == ["scim", "scimV2"]
    stats = fresh_sandbox.stats()
    assert sum(stats["calls"]["templates.list"].values()) == 2


async def test_errors_are_typed_with_graph_ids(graph: GraphClient) -> None:
    with pytest.raises(GraphError) as info:
        await graph.list_templates(UNKNOWN_SP, "4d1a6a53-0000-4000-8000-000000000001")
    err = info.value
    assert err.status == 404
    assert err.code == "Request_ResourceNotFound"
    assert err.request_id
    assert err.client_request_id == "4d1a6a53-0000-4000-8000-000000000001"


@pytest.mark.parametrize(
    ("style", "check"),
    [
        ("integer", lambda v: v == 3.0),
        ("decimal", lambda v: v == 2.128),
        ("http-date", lambda v: v is not None and 1 <= v <= 4),
        ("absent", lambda v: v is None),
    ],
)
async def test_throttling_carries_retry_after(
    graph: GraphClient, fresh_sandbox: SandboxProcess, style: str, check: Any
) -> None:
    fresh_sandbox.patch_faults(
        {
            "errors": {"templates.list": {"429": 1.0}},
            "retry_after_style": style,
            "retry_after_s": 2.128,
        }
    )
    with pytest.raises(GraphError) as info:
        await graph.list_templates(SALESFORCE, "crid")
    assert info.value.status == 429
    assert check(info.value.retry_after)


async def test_lost_create_response_is_a_transport_error(
    graph: GraphClient, fresh_sandbox: SandboxProcess
) -> None:
    fresh_sandbox.patch_faults({"lost_create_rate": 1.0})
    with pytest.raises(GraphTransportError):
        await graph.create_job(SALESFORCE, "salesforce", "crid")
    jobs = (await graph.list_jobs(SALESFORCE, "crid")).value
    assert [j.template_id for j in jobs] == ["salesforce"]


class _StaleFirst:
    """A token provider (ours to fake) whose first token Graph does not accept."""

    def __init__(self, real: TokenProvider) -> None:
        self.real = real
        self.handed_stale = False
        self.invalidated: list[str] = []

    async def token(self) -> str:
        if not self.handed_stale:
            self.handed_stale = True
            return "not-a-valid-token"
        return await self.real.token()

    async def invalidate(self, token: str) -> None:
        self.invalidated.append(token)


async def test_invalid_token_is_refreshed_once(fresh_sandbox: SandboxProcess) -> None:
    settings = _settings(fresh_sandbox)
    session = new_session(settings)
    tokens = _StaleFirst(await TokenProvider.create(settings))
    try:
        client = GraphClient(session, settings.graph_url, tokens)  # type: ignore[arg-type]
        templates = (await client.list_templates(SALESFORCE, "crid")).value
    finally:
        await session.close()
    assert [t.id for t in templates] == ["salesforce"]
    assert tokens.invalidated == ["not-a-valid-token"]
    assert fresh_sandbox.stats()["calls"]["templates.list"] == {"401": 1, "200": 1}


async def test_beta_endpoint_works_too(fresh_sandbox: SandboxProcess) -> None:
    settings = _settings(fresh_sandbox)
    beta = settings.graph_url.replace("/v1.0", "/beta")
    session = new_session(settings)
    try:
        client = GraphClient(session, beta, await TokenProvider.create(settings))
        templates = (await client.list_templates(SALESFORCE, "crid")).value
    finally:
        await session.close()
    assert [t.id for t in templates] == ["salesforce"]


@pytest.mark.parametrize("no_proxy", [False, True])
async def test_https_proxy_and_no_proxy_are_honoured_by_msal_and_graph(
    fresh_sandbox: SandboxProcess, monkeypatch: pytest.MonkeyPatch, no_proxy: bool
) -> None:
    proxy = ConnectProxy()
    await proxy.start()
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1" if no_proxy else "")
    monkeypatch.delenv("no_proxy", raising=False)
    settings = _settings(fresh_sandbox)
    session = new_session(settings)
    try:
        tokens = await TokenProvider.create(settings)
        client = GraphClient(session, settings.graph_url, tokens)
        templates = (await client.list_templates(SALESFORCE, "crid")).value
    finally:
        await session.close()
        await proxy.stop()
    assert [t.id for t in templates] == ["salesforce"]
    port = fresh_sandbox.info["port"]
    if no_proxy:
        assert proxy.seen == []
    else:
        # msal (discovery + token) and the Graph call all went through the proxy.
        assert len(proxy.seen) >= 2
        assert set(proxy.seen) == {f"127.0.0.1:{port}"}


async def test_jobs_are_parsed_into_models(graph: GraphClient) -> None:
    created = await graph.create_job(SALESFORCE, "salesforce", "crid")
    assert created.status == 201
    assert created.value.id
    assert created.value.template_id == "salesforce"
    fetched = await graph.get_job(SALESFORCE, created.value.id, "crid")
    assert fetched.value.id == created.value.id
    assert fetched.value.schedule_state  # e.g. "Disabled" before start
    assert fetched.value.status.quarantine is None


def test_a_body_that_does_not_parse_is_a_graph_error() -> None:
    """A 2xx answer whose body is not the resource is Graph's fault: MalformedResponse, with
    the answer's status and request-id to quote."""
    from workers.graph.models import Collection
    from workers.graph.response import GraphResponse, parse

    answer = GraphResponse(200, {"value": "not-a-list"}, "rid-1", "crid")
    with pytest.raises(GraphError) as info:
        parse(Collection, answer, "GET", "/jobs")
    assert info.value.code == "MalformedResponse"
    assert info.value.status == 200
    assert info.value.request_id == "rid-1"
    assert "value" in info.value.message
