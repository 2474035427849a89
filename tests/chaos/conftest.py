"""Fixtures of the chaos tests: sandboxes and redis-servers stopped at teardown, even when the
test failed half-way (a kill test must not leave processes behind)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.stack import chaos_sandbox
from tests.helpers.redis_server import RedisServer
from tests.helpers.sandbox import SandboxProcess


@pytest.fixture
def sandboxes(tmp_path: Path) -> Iterator[Callable[..., SandboxProcess]]:
    """``sandboxes(name, **faults)``: a chaos sandbox in ``tmp_path / name``."""
    started: list[SandboxProcess] = []

    def start(name: str, **faults: Any) -> SandboxProcess:
        sandbox = chaos_sandbox(tmp_path / name, **faults)
        started.append(sandbox)
        return sandbox

    yield start
    for sandbox in started:
        sandbox.stop()


@pytest.fixture
def redis_servers(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """``redis_servers(name, **options)``: a started RedisServer in ``tmp_path / name``."""
    started: list[RedisServer] = []

    def start(name: str, **options: Any) -> RedisServer:
        server = RedisServer(tmp_path / name, **options)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.kill()
