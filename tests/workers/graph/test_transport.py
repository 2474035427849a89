"""The call itself against the sandbox: typed errors with Graph's ids, Retry-After, paging, a
lost answer and the one token refresh."""

from __future__ import annotations

from typing import Any

import pytest

from service.core.errors import GraphError, GraphTransportError
from tests.helpers.harness import SALESFORCE, SCIM
from tests.helpers.sandbox import SandboxProcess, graph_settings
from workers.graph.client import GraphClient
from workers.graph.tls import new_session
from workers.graph.token import TokenProvider

UNKNOWN_SP = "0b5e2c7a-1111-4222-8333-944455556666"


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
    settings = graph_settings(fresh_sandbox)
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
    settings = graph_settings(fresh_sandbox)
    beta = settings.graph_url.replace("/v1.0", "/beta")
    session = new_session(settings)
    try:
        client = GraphClient(session, beta, await TokenProvider.create(settings))
        templates = (await client.list_templates(SALESFORCE, "crid")).value
    finally:
        await session.close()
    assert [t.id for t in templates] == ["salesforce"]
