"""Intake: what every new request passes before it is stored, wherever it comes from.

The API's ``POST /v1/provisioning-requests`` and the ticketing webhooks share these steps:
the caller's permission, the intake rate limit and queue cap, the body's parsing, the target
policy and the callback URL's SSRF check, the Idempotency-Key, then one transaction that stores
and enqueues (:func:`submit`). Retries pass the same permission, target policy and limits
(:mod:`service.api.routes`, :func:`service.api.access.authorize_action`).

A POST for a (principal, template) the same caller already has in flight answers 200 with that
record only when the body is the same (its keyed fingerprint is kept on the record); another
body answers 409 ``request-in-flight`` naming it. While *another* caller's request holds the
app, the new one is accepted (202) and queued behind it: the answer is the one a new request
gets, so a caller never learns about another caller's work.
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from aiohttp import web
from pydantic import ValidationError

from service.api.access import forbidden, not_found
from service.api.params import IDEMPOTENCY_KEY_MAX
from service.api.problems import FieldError, Problem, validation_problem
from service.api.state import ALLOWLIST, LIMITS, METRICS, POLICY, SETTINGS, STORE
from service.core.idempotency import IdempotencyClaim, IdempotencyEntry, fingerprint
from service.core.models import Record
from service.core.request import ProvisionRequest
from service.core.ssrf import check_callback_url

BASE = "/v1/provisioning-requests"
IDEMPOTENCY_HEADER = "Idempotency-Key"


def json_response(data: object, status: int = 200, location: str | None = None) -> web.Response:
    headers = {"Location": location} if location else None
    return web.json_response(data, status=status, headers=headers)


def page_response(items: list[dict[str, Any]], next_cursor: str | None) -> web.Response:
    """A listing's answer: a page of items and the cursor of the next (None at the end)."""
    return json_response({"items": items, "nextCursor": next_cursor})


def invalid(field: str, reason: str, status: int = 422) -> Problem:
    return Problem(
        status,
        "Validation error",
        f"{field} {reason}.",
        slug="validation-error",
        errors=[FieldError(field=field, reason=reason)],
    )


def conflict(detail: str, *, slug: str | None = None) -> Problem:
    return Problem(409, "Conflict", detail, slug=slug)


async def enforce_intake_limits(
    request: web.Request, caller: str, *, queue_cap: bool = True
) -> None:
    """429 + Retry-After past the caller's rate; 503 + Retry-After when the queue is full.

    New requests, webhook deliveries and retries pass both; a cancel passes the rate only (it
    adds no work, and refusing it while the queue is full would keep work in)."""
    limits = request.app[LIMITS]
    decision = await limits.take(caller)
    if not decision.allowed:
        raise Problem(
            429,
            "Too Many Requests",
            "This caller has sent too many provisioning requests; retry after Retry-After seconds.",
            slug="rate-limited",
            headers={"Retry-After": str(decision.retry_after_s)},
        )
    if queue_cap and await limits.queue_full():
        raise Problem(
            503,
            "Service Unavailable",
            "The provisioning queue is full; retry after Retry-After seconds.",
            slug="queue-full",
            headers={"Retry-After": "30"},
        )


async def parse_body(request: web.Request) -> ProvisionRequest:
    if request.content_type != "application/json":
        raise Problem(
            415,
            "Unsupported Media Type",
            "Send the body as application/json.",
            headers={"Accept-Post": "application/json"},
        )
    raw = await request.read()
    try:
        body = ProvisionRequest.model_validate_json(raw)
    except ValidationError as e:
        raise validation_problem(e) from None
    if body.credentials and request.app[STORE].cipher is None:
        raise invalid(
            "credentials",
            "cannot be accepted: this server has no PROVISIONER_ENCRYPTION_KEY configured",
        )
    return body


def idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= IDEMPOTENCY_KEY_MAX or not key.isprintable():
        reason = f"must be 1-{IDEMPOTENCY_KEY_MAX} printable characters"
        raise Problem(
            400,
            "Invalid header",
            f"Idempotency-Key {reason}.",
            errors=[FieldError(field=IDEMPOTENCY_HEADER, reason=reason)],
        )
    return key


async def replay(request: web.Request, entry: IdempotencyEntry, body_fp: str) -> web.Response:
    if entry.fingerprint != body_fp:
        raise Problem(
            422,
            "Idempotency-Key reused",
            "This Idempotency-Key was used with a different request body.",
            slug="idempotency-key-reused",
        )
    if entry.status is None or entry.request_id is None:
        raise Problem(
            409,
            "Request in progress",
            "A request with this Idempotency-Key is still being processed; retry shortly.",
            slug="idempotency-key-in-progress",
            headers={"Retry-After": "1"},
        )
    record = await request.app[STORE].get(entry.request_id)
    if record is None:
        raise not_found()
    return record_response(record, entry.status)


def new_record(body: ProvisionRequest, caller: str, body_fp: str) -> Record:
    return Record(
        id=uuid4().hex,
        service_principal_id=body.service_principal_id or "",  # "": instantiate_app sets it
        template_id=body.template_id,
        requested_template_id=body.template_id,
        start=body.start,
        has_credentials=bool(body.credentials),
        callback_url=body.callback_url,
        external_reference=body.external_reference,
        metadata=body.metadata,
        caller=caller,
        request_fingerprint=body_fp,
        application=body.application,
        assignments=body.assignments or [],
        # An app made here starts "assigned only" unless asked otherwise (SyncAll "false").
        scope=body.scope or ("assigned" if body.application is not None else None),
        attribute_mappings=body.attribute_mappings or [],
        action=body.action,
        reset_scope=list(body.reset_scope) if body.reset_scope is not None else None,
        smoke_test=body.smoke_test,
    )


def application_allowed(request: web.Request, caller: str, template_id: str | None) -> str | None:
    """Why ``caller`` may not create a gallery app, or None: creating one needs a policy
    allowing every service principal (``*``), as the new principal cannot be named in it."""
    return request.app[POLICY].create_allowed(caller, template_id)


async def authorize_body(request: web.Request, body: ProvisionRequest, caller: str) -> None:
    """403 when the caller may not provision this principal/template; 422 for an unsafe
    ``callbackUrl`` (SSRF). Runs before anything is stored, so before any Graph call."""
    if body.service_principal_id is None:
        reason = application_allowed(request, caller, body.template_id)
    else:
        policy = request.app[POLICY]
        reason = policy.target_allowed(caller, body.service_principal_id, body.template_id)
    if reason is not None:
        raise forbidden(reason[0].upper() + reason[1:] + ".")
    if body.callback_url is not None:
        why = await check_callback_url(body.callback_url, request.app[ALLOWLIST])
        if why is not None:
            raise invalid("callbackUrl", why)


async def submit(
    request: web.Request,
    body: ProvisionRequest,
    caller: str,
    key: str | None,
    *,
    source: str,
    ttl_s: int | None = None,
) -> web.Response:
    """Store and enqueue an authorized request (shared by the API and the webhooks): one script
    reads and completes the Idempotency-Key, checks the in-flight rule and stores record,
    credentials, indexes and arq job (:meth:`~service.core.store.Store.accept_keyed`)."""
    store = request.app[STORE]
    body_fp = fingerprint(body.fingerprint_payload(), store.cipher)
    claim = None
    if key is not None:
        claim = IdempotencyClaim(key, body_fp, ttl_s or request.app[SETTINGS].idempotency_ttl_s)
    accepted = await store.accept_keyed(new_record(body, caller, body_fp), body.credentials, claim)
    if accepted.replay is not None:
        return await replay(request, accepted.replay, body_fp)
    record, created = accepted.record, accepted.created
    if not created and record.request_fingerprint != body_fp:
        # The in-flight request asks for something else: say so rather than drop this one
        # (the script left the Idempotency-Key free).
        raise Problem(
            409,
            "Request in flight",
            f"Request {record.id} for this service principal and template is queued or running "
            "with a different body (credentials, start, callbackUrl, templateId, "
            "externalReference or metadata); cancel it or wait until it has finished.",
            slug="request-in-flight",
            headers={"Location": f"{BASE}/{record.id}"},
        )
    request.app[METRICS].count_intake(source, created=created)
    return record_response(record, 202 if created else 200)


def record_response(record: Record, status: int = 200) -> web.Response:
    """A record as the API returns it, with its Location (serialised once, by pydantic)."""
    return web.Response(
        text=record.public_json(),
        status=status,
        content_type="application/json",
        headers={"Location": f"{BASE}/{record.id}"},
    )
