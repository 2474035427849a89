"""schemathesis against ``GET /openapi.json`` of a live API (real HTTP, real Redis): every
operation, authenticated, a bounded number of examples each. No 5xx, every response (status,
content type, headers, body) as documented."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.api.app import create_app
from service.api.openapi import build_openapi
from tests.api.test_routes import AUTH, make_settings
from tests.helpers.redis_server import RedisServer, free_port

MAX_EXAMPLES = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


class LiveApi:
    """``create_app`` served on a random local port from a thread with its own event loop."""

    def __init__(self, redis_url: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._settings = make_settings(redis_url, log_level="WARNING")
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._runner: web.AppRunner | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._runner = web.AppRunner(create_app(self._settings), access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        self._loop.run_until_complete(site.start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def __enter__(self) -> LiveApi:
        self._thread.start()
        assert self._ready.wait(10), "the API did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture(scope="module")
def live_api(redis_server: RedisServer) -> Iterator[LiveApi]:
    import redis as sync_redis

    sync_redis.Redis.from_url(redis_server.url).flushdb()
    with LiveApi(redis_server.url) as api:
        yield api


# schemathesis' lazy ``from_fixture`` loader breaks on pytest 9 (it reads ``node._nodeid``), so
# the schema is built from the same document the API serves; the first test checks they match.
schema = schemathesis.openapi.from_dict(build_openapi())


def test_served_document_is_the_fuzzed_one(live_api: LiveApi) -> None:
    resp = requests.get(f"{live_api.url}/openapi.json", timeout=5)
    assert resp.json() == build_openapi()


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_api_conforms_to_its_openapi(case: Any, live_api: LiveApi) -> None:
    with requests.Session() as session:
        session.trust_env = False
        case.call_and_validate(
            base_url=live_api.url, session=session, headers=dict(AUTH), checks=CHECKS
        )
