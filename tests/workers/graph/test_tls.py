"""Outbound TLS and the Graph session: proxies from the environment, honoured by msal and Graph
alike."""

from __future__ import annotations

import pytest

from tests.helpers.harness import SALESFORCE
from tests.helpers.proxy import ConnectProxy
from tests.helpers.sandbox import SandboxProcess, graph_settings
from workers.graph.client import GraphClient
from workers.graph.tls import new_session
from workers.graph.token import TokenProvider


@pytest.mark.parametrize("no_proxy", [False, True])
async def test_https_proxy_and_no_proxy_are_honoured_by_msal_and_graph(
    fresh_sandbox: SandboxProcess, monkeypatch: pytest.MonkeyPatch, no_proxy: bool
) -> None:
    proxy = ConnectProxy()
    await proxy.start()
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1" if no_proxy else "")
    monkeypatch.delenv("no_proxy", raising=False)
    settings = graph_settings(fresh_sandbox)
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
