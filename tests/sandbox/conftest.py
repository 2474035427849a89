"""Fixtures of the sandbox tests: a certificate directory per module and an in-process sandbox
over TLS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.helpers.sandbox import InProcessSandbox, in_process_sandbox


@pytest.fixture(scope="module")
def certs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Key material shared by a module's sandboxes (made once)."""
    return tmp_path_factory.mktemp("sandbox-graph")


@pytest.fixture
async def sb(certs_dir: Path) -> AsyncIterator[InProcessSandbox]:
    """A fresh in-process sandbox (activation 100 ms) with a session trusting it."""
    async with in_process_sandbox(certs_dir, faults={"activation_delay_ms": 100}) as sandbox:
        yield sandbox
