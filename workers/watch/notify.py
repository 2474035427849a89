"""Telling about a change of health: the signed ``application.health_changed`` callback to the
last request's ``callbackUrl``, and a note on its ticket when it came from a ticketing webhook.

Both jobs are queued with the change itself (:meth:`ApplicationStore.update`), carry the
event's id, are signed and sent like a request's callbacks (workers/notify/callbacks.py: the
caller's ``PROVISIONER_CALLBACK_SECRETS`` entry, Standard Webhooks headers, a stable
``webhook-id`` per event) and retried on the same schedule for ``PROVISIONER_CALLBACK_WINDOW_S``
after the change. Each attempt is kept in the application's ``notifications``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import structlog
from arq import Retry

from service.core.application_store import ApplicationStore, Update
from service.core.applications import Application, HealthEvent
from service.core.fields import utcnow
from service.core.models import CallbackAttempt
from workers.notify.callbacks import (
    SCHEDULE_S,
    UNSIGNED_REASON,
    attempt_delivery,
    signed_headers,
)
from workers.notify.writeback import WritebackConfig, ticket_note
from workers.workflow.steps import Deps

log = structlog.get_logger("workers.watch.notify")


async def deliver_health_callback(ctx: dict[str, Any], event_id: str) -> None:
    """arq job: POST an ``application.health_changed`` event to the last request's callbackUrl."""
    deps: Deps = ctx["deps"]
    apps = ApplicationStore.of(deps.store)
    event = await apps.event(event_id)
    if event is None or not event.callback_url:
        return
    secret = deps.settings.callback_secret(event.caller)
    if secret is None:  # never unsigned: no secret, no callback (warned at start-up)
        log.warning("callback_skipped", event_id=event.id, reason=UNSIGNED_REASON)
        return
    body = event.body()
    headers = signed_headers(secret, f"msg_health_{event.id}", body)
    attempt = await attempt_delivery(
        ctx, "callbackUrl", "POST", event.callback_url, data=body, headers=headers
    )
    await _settle(deps, apps, event, attempt)


async def write_back_health(ctx: dict[str, Any], event_id: str) -> None:
    """arq job: note the change of health on the last request's ticket."""
    deps: Deps = ctx["deps"]
    config: WritebackConfig = ctx["writeback"]
    apps = ApplicationStore.of(deps.store)
    event = await apps.event(event_id)
    if event is None or not event.external_reference:
        return
    source = event.caller.removeprefix("webhook:")
    try:
        call = ticket_note(config, source, event.external_reference, event.note_text())
    except ValueError:
        return  # not a usable ticket reference: nothing to write back to
    if call is None:
        return  # no write-back configured for this source
    method, url, options = call
    attempt = await attempt_delivery(ctx, source, method, url, **options)
    await _settle(deps, apps, event, attempt)


async def _settle(
    deps: Deps, apps: ApplicationStore, event: HealthEvent, attempt: CallbackAttempt
) -> None:
    """Keep the attempt; re-queue a failed one while the window after the change is open."""
    delay = SCHEDULE_S[min(attempt.attempt - 1, len(SCHEDULE_S) - 1)]
    window_end = event.at + timedelta(seconds=deps.settings.callback_window_s)
    retry = not attempt.delivered and utcnow() + timedelta(seconds=delay) <= window_end
    if not attempt.delivered and not retry:
        attempt.error = f"{attempt.error}; gave up after {attempt.attempt} attempts"

    def keep(app: Application) -> Update:
        app.note(attempt)
        return Update()

    await apps.update(event.service_principal_id, keep)
    log.info(
        "health_notification_attempt",
        service_principal_id=event.service_principal_id,
        job_id=event.job_id,
        health=event.health,
        target=attempt.target,
        attempt=attempt.attempt,
        status=attempt.status,
        delivered=attempt.delivered,
        error=attempt.error,
    )
    if retry:
        raise Retry(defer=delay)
