"""Callbacks to callbackUrl: queued with the terminal state, signed (checked with the Standard
Webhooks reference library, ``standardwebhooks``), never unsigned, retried with the same bytes,
capped per caller, recorded."""

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
from redis.asyncio import Redis
from standardwebhooks import Webhook, WebhookVerificationError

from service.core import signing
from service.core.errors import ConfigError
from service.core.models import State
from service.core.settings import load_settings
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
    done = await harness.run(SALESFORCE, callback_url=recv.url, caller="tests")
    assert done.state is State.SUCCEEDED
    [(headers, body)] = recv.deliveries
    assert Webhook(SECRET).verify(body, headers)["data"]["id"] == done.id  # the reference library
    msg_id, ts = headers["webhook-id"], int(headers["webhook-timestamp"])
    assert signing.verify([SECRET], msg_id, ts, body, headers["webhook-signature"])
    assert not signing.verify(["whsec_" + base64.b64encode(b"x" * 32).decode()], msg_id, ts,
                              body, headers["webhook-signature"])  # fmt: skip
    event = json.loads(body)
    assert event["type"] == "provisioning_request.succeeded"
    assert event["data"]["id"] == done.id
    assert event["data"]["jobId"] == done.job_id
    [attempt] = done.callbacks
    assert attempt.delivered
    assert attempt.status == 200


async def test_a_retry_sends_the_same_bytes_newly_signed(
    harness: Harness, redis_url: str, receiver: tuple[Receiver, Path]
) -> None:
    recv, ca_file = receiver
    recv.statuses = [500]
    _with_receiver(harness, redis_url, ca_file, callback_secrets=f"tests:{SECRET}")
    rec = await harness.submit(GITHUB, callback_url=recv.url, caller="tests")
    await harness.drain()  # the retry comes 5 s later (the spec's first delay)
    done = await harness.get(rec.id)
    assert done.state is State.FAILED
    assert [(c.status, c.delivered) for c in done.callbacks] == [(500, False), (200, True)]
    (first_headers, first_body), (second_headers, second_body) = recv.deliveries
    assert first_body == second_body  # byte for byte: one message, one payload
    assert first_headers["webhook-id"] == second_headers["webhook-id"]
    assert first_headers["webhook-timestamp"] != second_headers["webhook-timestamp"]
    assert first_headers["webhook-signature"] != second_headers["webhook-signature"]
    for headers, body in recv.deliveries:
        Webhook(SECRET).verify(body, headers)  # each one freshly signed and valid
    event = json.loads(first_body)
    assert event["data"]["error"]["code"] == "TemplateAmbiguous"
    assert event["data"]["callbacks"] == []  # the record as it ended, before any attempt


@pytest.mark.parametrize(
    "caller", ["webhook:standard", "entra:3d9e8f7a-6b5c-4d3e-2f1a-0b9c8d7e6f5a"]
)
async def test_callers_with_colons_get_signed_callbacks(
    harness: Harness, redis_url: str, receiver: tuple[Receiver, Path], caller: str
) -> None:
    recv, ca_file = receiver
    other = "whsec_" + base64.b64encode(b"another-callers-secret-abcdefgh").decode()
    _with_receiver(
        harness,
        redis_url,
        ca_file,
        # The issue's form (split at the first ':' it failed) next to an older plain entry.
        callback_secrets=f"{caller}:{SECRET},portal:{other}",
    )
    rec = await harness.submit(SALESFORCE, callback_url=recv.url, caller=caller)
    await harness.drain()
    [(headers, body)] = recv.deliveries
    assert Webhook(SECRET).verify(body, headers)["data"]["caller"] == caller
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(body, headers)
    assert [c.delivered for c in (await harness.get(rec.id)).callbacks] == [True]


async def test_no_secret_no_callback_and_the_skip_is_recorded(
    harness: Harness, redis_url: str, receiver: tuple[Receiver, Path]
) -> None:
    recv, ca_file = receiver
    _with_receiver(harness, redis_url, ca_file, callback_secrets=f"tests:{SECRET}")
    rec = await harness.submit(SALESFORCE, callback_url=recv.url, caller="webhook:standard")
    await harness.drain()
    assert recv.deliveries == []  # never sent unsigned
    done = await harness.get(rec.id)
    [skipped] = done.callbacks
    assert skipped.skipped
    assert not skipped.delivered
    assert skipped.error is not None
    assert "PROVISIONER_CALLBACK_SECRETS" in skipped.error


async def test_one_callers_failing_callbacks_are_capped(
    harness: Harness, redis_url: str, redis: Redis, receiver: tuple[Receiver, Path]
) -> None:
    recv, ca_file = receiver
    recv.statuses = [500, 500]  # both first attempts fail; the one retry succeeds
    _with_receiver(
        harness,
        redis_url,
        ca_file,
        callback_secrets=f"tests:{SECRET}",
        callback_max_pending=1,
    )
    first = await harness.submit(SALESFORCE, callback_url=recv.url, caller="tests")
    second = await harness.submit(GITHUB, callback_url=recv.url, caller="tests")
    await harness.drain()
    outcomes = []
    for rec in (first, second):
        done = await harness.get(rec.id)
        outcomes.append([(c.attempt, c.delivered, c.error) for c in done.callbacks])
    outcomes.sort(key=len)
    gave_up, retried = outcomes
    assert [(a, d) for a, d, _ in gave_up] == [(1, False)]
    assert "too many notifications awaiting a retry" in str(gave_up[0][2])
    assert [(a, d) for a, d, _ in retried] == [(1, False), (2, True)]
    key = f"{harness.settings.queue_name}:callbacks-pending:tests"
    assert await redis.zcard(key) == 0  # the delivered one left the set


def test_callback_secret_entries_split_at_the_last_colon_or_come_as_json() -> None:
    settings = load_settings(
        callback_secrets=f"portal:{SECRET}, webhook:standard:{SECRET},entra:3d9e8f7a:{SECRET}"
    )
    assert [s.name for s in settings.callback_secrets] == [
        "portal",  # the old form keeps working
        "webhook:standard",
        "entra:3d9e8f7a",
    ]
    assert settings.callback_secret("webhook:standard") == SECRET
    as_json = load_settings(callback_secrets=json.dumps({"odd,name:x": SECRET}))
    assert as_json.callback_secret("odd,name:x") == SECRET
    for bad in ("portal:not-a-whsec", "portal:whsec_!!!", "whsec_" + "A" * 40, "portal:whsec_YQ=="):
        with pytest.raises(ConfigError, match="PROVISIONER_CALLBACK_SECRETS") as info:
            load_settings(callback_secrets=bad)
        assert SECRET not in str(info.value)
