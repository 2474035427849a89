"""Telling the caller: POST the record to its ``callbackUrl`` when the request ends.

The job is queued in the same transaction that stores the terminal state (service/core/store.py), so
a crash cannot lose it. Each delivery is signed per the Standard Webhooks spec with the
caller's secret (``PROVISIONER_CALLBACK_SECRETS``), carries a stable ``webhook-id`` for the
receiver's dedupe, and is retried on the spec's recommended schedule (5 s, 5 min, 30 min, 2 h,
5 h, 10 h, 10 h) for up to ``PROVISIONER_CALLBACK_WINDOW_S`` (24 h). Every attempt is recorded in
the record's ``callbacks`` list.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import aiohttp
import structlog
from arq import Retry

from service.core import signing
from service.core.models import CallbackAttempt, Record, utcnow
from service.core.settings import Settings
from workers.workflow.steps import Deps

log = structlog.get_logger("workers.notify.callbacks")
SCHEDULE_S = (5, 300, 1800, 7200, 18000, 36000, 36000)


def payload(record: Record) -> bytes:
    """The callback body: the event type, when, and the record as the API shows it."""
    event = {
        "type": f"provisioning_request.{record.state.value}",
        "timestamp": utcnow().isoformat(),
        "data": record.public(),
    }
    return json.dumps(event, separators=(",", ":")).encode()


def past_window(record: Record, delay_s: float, window_s: float) -> bool:
    """True when a retry ``delay_s`` from now falls outside the window after the request ended."""
    ended_at = record.history[-1].at if record.history else record.updated_at
    return utcnow() + timedelta(seconds=delay_s) > ended_at + timedelta(seconds=window_s)


async def deliver(
    ctx: dict[str, Any], record: Record, target: str, method: str, url: str, **options: Any
) -> None:
    """One delivery attempt of a notification about ``record``: recorded in its ``callbacks``;
    on failure re-queued (arq ``Retry``) on :data:`SCHEDULE_S` until the window closes."""
    deps: Deps = ctx["deps"]
    session: aiohttp.ClientSession = ctx["callback_session"]
    attempt = int(ctx.get("job_try", 1))
    result = CallbackAttempt(at=utcnow(), attempt=attempt, target=target)
    try:
        async with session.request(
            method,
            url,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=deps.settings.callback_timeout_s),
            **options,
        ) as resp:
            result.status = resp.status
            result.delivered = 200 <= resp.status < 300
            result.error = None if result.delivered else f"HTTP {resp.status}"
    except (aiohttp.ClientError, TimeoutError) as e:
        result.error = type(e).__name__
    record.callbacks.append(result)
    log.info(
        "notification_attempt",
        provisioning_request_id=record.id,
        target=target,
        attempt=attempt,
        status=result.status,
        delivered=result.delivered,
        error=result.error,
    )
    delay = SCHEDULE_S[min(attempt - 1, len(SCHEDULE_S) - 1)]
    retry = not result.delivered and not past_window(record, delay, deps.settings.callback_window_s)
    if not result.delivered and not retry:
        result.error = f"{result.error}; gave up after {attempt} attempts"
        log.warning("notification_abandoned", provisioning_request_id=record.id, target=target)
    await deps.store.save(record, notify=False)
    if retry:
        raise Retry(defer=delay)


async def deliver_callback(ctx: dict[str, Any], request_id: str) -> None:
    """arq job: POST the ended request to its ``callbackUrl``, signed for its caller."""
    deps: Deps = ctx["deps"]
    record = await deps.store.get(request_id)
    if record is None or not record.callback_url or not record.state.terminal:
        return
    body = payload(record)
    msg_id = f"msg_{record.id}_{len(record.history)}"
    secret = deps.settings.callback_secret(record.caller)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "entra-provisioner",
        **signing.headers(secret, msg_id, int(time.time()), body),
    }
    await deliver(
        ctx, record, "callbackUrl", "POST", record.callback_url, data=body, headers=headers
    )


# Events that are not a request's end (the health watch's application.health_changed) -------
def signed_headers(settings: Settings, caller: str, msg_id: str, body: bytes) -> dict[str, str]:
    """The headers of a delivery to ``caller``'s callbackUrl, signed as above."""
    return {
        "Content-Type": "application/json",
        "User-Agent": "entra-provisioner",
        **signing.headers(settings.callback_secret(caller), msg_id, int(time.time()), body),
    }


async def attempt_delivery(
    ctx: dict[str, Any], target: str, method: str, url: str, **options: Any
) -> CallbackAttempt:
    """One attempt of a notification that belongs to no request record; the caller keeps the
    attempt and re-queues on :data:`SCHEDULE_S` (workers/watch/notify.py)."""
    deps: Deps = ctx["deps"]
    session: aiohttp.ClientSession = ctx["callback_session"]
    result = CallbackAttempt(at=utcnow(), attempt=int(ctx.get("job_try", 1)), target=target)
    try:
        async with session.request(
            method,
            url,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=deps.settings.callback_timeout_s),
            **options,
        ) as resp:
            result.status = resp.status
            result.delivered = 200 <= resp.status < 300
            result.error = None if result.delivered else f"HTTP {resp.status}"
    except (aiohttp.ClientError, TimeoutError) as e:
        result.error = type(e).__name__
    return result
