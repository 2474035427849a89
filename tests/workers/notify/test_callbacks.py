"""Callbacks to callbackUrl: queued with the terminal state, signed, retried, recorded."""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web

from service.core import signing
from service.core.models import State
from tests.helpers.harness import GITHUB, SALESFORCE, Harness, worker_settings
from tests.helpers.local_server import serving

SECRET = "whsec_" + base64.b64encode(b"callback-secret-for-tests-0123456").decode()


class Receiver:
    """An HTTPS endpoint that records deliveries and answers from a script of statuses."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.deliveries.append((dict(request.headers), await request.read()))
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status)


@pytest.fixture
async def receiver(tmp_path: Path) -> AsyncIterator[tuple[Receiver, Path]]:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    recv = Receiver([])
    app = web.Application()
    app.router.add_post("/hook", recv.handle)
    ca_file = tmp_path / "receiver-ca.pem"
    ca_file.write_bytes(ca.cert_pem.bytes())
    async with serving(app, server_ctx) as base:
        recv.url = f"{base}/hook"
        yield recv, ca_file


def _with_receiver(harness: Harness, redis_url: str, ca_file: Path, **extra: Any) -> None:
    bundle = ca_file.parent / "bundle.pem"
    bundle.write_text(Path(harness.sandbox.ca_path).read_text() + ca_file.read_text())
    harness.settings = worker_settings(
        harness.sandbox,
        redis_url,
        queue_name=harness.settings.queue_name,
        ca_bundle=bundle,
        **extra,
    )


async def test_terminal_state_is_posted_signed(
    harness: Harness, redis_url: str, receiver: tuple[Receiver, Path]
) -> None:
    recv, ca_file = receiver
    _with_receiver(harness, redis_url, ca_file, callback_secrets=f"tests:{SECRET}")
    rec = await harness.submit(SALESFORCE, callback_url=recv.url, caller="tests")
    await harness.drain()
    done = await harness.get(rec.id)
    assert done.state is State.SUCCEEDED
    [(headers, body)] = recv.deliveries
    msg_id, ts = headers["webhook-id"], int(headers["webhook-timestamp"])
    assert signing.verify([SECRET], msg_id, ts, body, headers["webhook-signature"])
    assert not signing.verify(["whsec_" + base64.b64encode(b"x" * 32).decode()], msg_id, ts,
                              body, headers["webhook-signature"])  # fmt: skip
    event = json.loads(body)
    assert event["type"] == "provisioning_request.succeeded"
    assert event["data"]["id"] == rec.id
    assert event["data"]["jobId"] == done.job_id
    [attempt] = done.callbacks
    assert attempt.delivered
    assert attempt.status == 200


async def test_failed_delivery_is_retried_and_every_attempt_recorded(
    harness: Harness, redis_url: str, receiver: tuple[Receiver, Path]
) -> None:
    recv, ca_file = receiver
    recv.statuses = [503]
    _with_receiver(harness, redis_url, ca_file)
    rec = await harness.submit(GITHUB, callback_url=recv.url)
    await harness.drain()  # the retry comes 5 s later (the spec's first delay)
    done = await harness.get(rec.id)
    assert done.state is State.FAILED
    assert [(c.status, c.delivered) for c in done.callbacks] == [(503, False), (200, True)]
    assert len(recv.deliveries) == 2
    ids = {headers["webhook-id"] for headers, _ in recv.deliveries}
    assert len(ids) == 1  # the same message, for the receiver's dedupe
    assert "webhook-signature" not in recv.deliveries[0][0]  # no secret for this caller
    assert json.loads(recv.deliveries[0][1])["data"]["error"]["code"] == "TemplateAmbiguous"
