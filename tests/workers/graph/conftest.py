"""Fixtures of the Graph client tests: settings for a sandbox, and a client on it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.helpers.sandbox import SandboxProcess, graph_settings
from workers.graph.client import GraphClient
from workers.graph.tls import new_session
from workers.graph.token import TokenProvider


@pytest.fixture
async def graph(fresh_sandbox: SandboxProcess) -> AsyncIterator[GraphClient]:
    """A Graph client on a fresh sandbox, over one session closed after the test."""
    settings = graph_settings(fresh_sandbox)
    session = new_session(settings)
    tokens = await TokenProvider.create(settings)
    yield GraphClient(session, settings.graph_url, tokens)
    await session.close()
