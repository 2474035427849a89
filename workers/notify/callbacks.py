"""Telling the caller: POST the record to its ``callbackUrl`` when the request ends.

The job is queued in the same transaction that stores the terminal state (service/core/store.py), so
a crash cannot lose it. Each delivery is signed per the Standard Webhooks spec with the
caller's secret (``PROVISIONER_CALLBACK_SECRETS``) and is never sent unsigned: a caller without
a secret gets no callback, and the record's ``callbacks`` list says so (``skipped``). One
message, one id, one body: the body describes the record as it was when the request ended, is
built by the first attempt and stored (``{p}:callback-body:{id}``), and every retry sends those
same bytes under the same ``webhook-id``, newly signed (a new ``webhook-timestamp`` and
``webhook-signature``), as the spec's receivers expect. Retries follow the spec's recommended
schedule (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h) for up to ``PROVISIONER_CALLBACK_WINDOW_S``
(24 h), and at most ``PROVISIONER_CALLBACK_MAX_PENDING`` notifications of one caller wait for a
retry at once (see :mod:`workers.notify.pending`). Every attempt is recorded in ``callbacks``.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import structlog
from arq import Retry
from yarl import URL

from service.core import signing
from service.core.fields import utcnow
from service.core.keys import Keys
from service.core.models import CallbackAttempt, Record
from workers.notify.pending import PendingNotifications
from workers.workflow.steps import Deps

log = structlog.get_logger("workers.notify.callbacks")
SCHEDULE_S = (5, 300, 1800, 7200, 18000, 36000, 36000)
UNSIGNED_REASON = "not sent: no callback secret for this caller (PROVISIONER_CALLBACK_SECRETS)"


def ended_at(record: Record) -> datetime:
    """When the request reached its terminal state."""
    return record.history[-1].at if record.history else record.updated_at


def payload(record: Record) -> bytes:
    """The callback body: the event type, when the request ended, and the record as the API
    showed it then (notification attempts made after the end are not part of it)."""
    end = ended_at(record)
    data = record.public()
    data["callbacks"] = [
        c.model_dump(by_alias=True, mode="json") for c in record.callbacks if c.at <= end
    ]
    event = {
        "type": f"provisioning_request.{record.state.value}",
        "timestamp": end.isoformat(),
        "data": data,
    }
    return json.dumps(event, separators=(",", ":")).encode()


def message_id(record: Record) -> str:
    """The ``webhook-id`` of the callback of this terminal transition."""
    return f"msg_{record.id}_{len(record.history)}"


def past_window(record: Record, delay_s: float, window_s: float) -> bool:
    """True when a retry ``delay_s`` from now falls outside the window after the request ended."""
    return utcnow() + timedelta(seconds=delay_s) > ended_at(record) + timedelta(seconds=window_s)


async def deliver(
    ctx: dict[str, Any],
    record: Record,
    target: str,
    method: str,
    url: str | URL,
    *,
    notification: str,
    **options: Any,
) -> None:
    """One delivery attempt of a notification about ``record``: recorded in its ``callbacks``;
    on failure re-queued (arq ``Retry``) on :data:`SCHEDULE_S` until the window closes or the
    caller has too many notifications waiting (``notification`` names this one for that count)."""
    deps: Deps = ctx["deps"]
    attempt = int(ctx.get("job_try", 1))
    result = await attempt_delivery(ctx, target, method, url, **options)
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
    pending = PendingNotifications(deps.store.redis, deps.settings, record.caller)
    delay = SCHEDULE_S[min(attempt - 1, len(SCHEDULE_S) - 1)]
    retry = not result.delivered and not past_window(record, delay, deps.settings.callback_window_s)
    if retry and not await pending.wait(notification, ended_at(record)):
        retry = False
        result.error = f"{result.error}; the caller has too many notifications awaiting a retry"
    if not result.delivered and not retry:
        result.error = f"{result.error}; gave up after {attempt} attempts"
        log.warning("notification_abandoned", provisioning_request_id=record.id, target=target)
    if not retry:
        await pending.done(notification)
    await deps.store.save(record, notify=False)
    if retry:
        raise Retry(defer=delay)


async def stored_body(deps: Deps, record: Record, msg_id: str) -> bytes:
    """The message's body: built and stored by the first attempt, read back by every retry."""
    key = Keys(deps.settings.queue_name).callback_body(msg_id)
    ttl_s = int(deps.settings.callback_window_s) + 86_400
    await deps.store.redis.set(key, payload(record), nx=True, ex=ttl_s)
    body = await deps.store.redis.get(key)
    return bytes(body) if body is not None else payload(record)


async def deliver_callback(ctx: dict[str, Any], request_id: str) -> None:
    """arq job: POST the ended request to its ``callbackUrl``, signed for its caller."""
    deps: Deps = ctx["deps"]
    record = await deps.store.get(request_id)
    if record is None or not record.callback_url or not record.state.terminal:
        return
    secret = deps.settings.callback_secret(record.caller)
    if secret is None:
        record.callbacks.append(
            CallbackAttempt(at=utcnow(), attempt=0, skipped=True, error=UNSIGNED_REASON)
        )
        log.warning("callback_skipped", provisioning_request_id=record.id, reason=UNSIGNED_REASON)
        await deps.store.save(record, notify=False)
        return
    msg_id = message_id(record)
    body = await stored_body(deps, record, msg_id)
    headers = signed_headers(secret, msg_id, body)
    await deliver(
        ctx,
        record,
        "callbackUrl",
        "POST",
        record.callback_url,
        notification=f"callback:{msg_id}",
        data=body,
        headers=headers,
    )


def signed_headers(secret: str, msg_id: str, body: bytes) -> dict[str, str]:
    """The headers of one delivery attempt, newly signed (Standard Webhooks) for its caller."""
    return {
        "Content-Type": "application/json",
        "User-Agent": "entra-provisioner",
        **signing.headers(secret, msg_id, int(time.time()), body),
    }


async def attempt_delivery(
    ctx: dict[str, Any], target: str, method: str, url: str | URL, **options: Any
) -> CallbackAttempt:
    """One HTTP attempt of a notification, as a :class:`CallbackAttempt` (never raises for the
    receiver's failure): :func:`deliver` records it on the request, the health watch's
    notifications (workers/watch/notify.py) on the application."""
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
    except (aiohttp.ClientError, TimeoutError, OSError) as e:
        result.error = type(e).__name__
    return result
