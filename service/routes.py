"""The intake API's handlers (contract: ``docs/api.md``, built from :mod:`service.openapi`).

Request ids are ``uuid4().hex``: 32 lowercase hex digits, no dashes, so they are never mistaken
for a service principal's GUID when quoted in a ticket. Callers only ever see their own records:
another caller's id answers 404, exactly like an unknown one.

The application state the handlers read lives under the :class:`web.AppKey`s below (re-exported
by :mod:`service.app`, which fills them).
"""

from __future__ import annotations

import contextlib
import re
from typing import Any
from uuid import UUID, uuid4

from aiohttp import web
from pydantic import ValidationError
from redis.asyncio import Redis

from service.auth import CALLER, TOKEN_ROLES
from service.config import Settings
from service.metrics import ApiMetrics, metrics_response
from service.models import HistoryEntry, Outcome, ProvisionRequest, Record, State, utcnow
from service.openapi import build_openapi
from service.policy import AccessPolicy, Permission
from service.problems import FieldError, Problem, validation_problem
from service.ratelimit import IntakeLimits
from service.ssrf import CallbackAllowlist, check_callback_url
from service.store import IdempotencyEntry, Store, fingerprint

SETTINGS: web.AppKey[Settings] = web.AppKey("settings", Settings)
REDIS: web.AppKey[Redis] = web.AppKey("redis", Redis)
STORE: web.AppKey[Store] = web.AppKey("store", Store)
METRICS: web.AppKey[ApiMetrics] = web.AppKey("metrics", ApiMetrics)
POLICY: web.AppKey[AccessPolicy] = web.AppKey("access_policy", AccessPolicy)
LIMITS: web.AppKey[IntakeLimits] = web.AppKey("intake_limits", IntakeLimits)
ALLOWLIST: web.AppKey[CallbackAllowlist] = web.AppKey("callback_allowlist", CallbackAllowlist)

BASE = "/v1/provisioning-requests"
IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_LIMIT = 200
DEFAULT_LIMIT = 50
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_LIST_PARAMS = frozenset({"state", "servicePrincipalId", "cursor", "limit"})

routes = web.RouteTableDef()


def _json(data: Any, status: int = 200, location: str | None = None) -> web.Response:
    headers = {"Location": location} if location else None
    return web.json_response(data, status=status, headers=headers)


def _invalid(field: str, reason: str, status: int = 422) -> Problem:
    return Problem(
        status,
        "Validation error",
        f"{field} {reason}.",
        slug="validation-error",
        errors=[FieldError(field=field, reason=reason)],
    )


def _not_found() -> Problem:
    return Problem(404, "Not Found", "No provisioning request with this id.")


def _conflict(detail: str) -> Problem:
    return Problem(409, "Conflict", detail)


def _forbidden(detail: str) -> Problem:
    return Problem(403, "Forbidden", detail)


def require(request: web.Request, permission: Permission) -> None:
    """403 unless the caller's policy (and token roles) grant ``permission``."""
    granted = request.app[POLICY].permissions(request[CALLER], request.get(TOKEN_ROLES))
    if permission not in granted:
        raise _forbidden(f"This caller lacks the {permission.value!r} permission.")


async def enforce_intake_limits(request: web.Request, caller: str) -> None:
    """429 + Retry-After past the caller's rate; 503 + Retry-After when the queue is full."""
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
    if await limits.queue_full():
        raise Problem(
            503,
            "Service Unavailable",
            "The provisioning queue is full; retry after Retry-After seconds.",
            slug="queue-full",
            headers={"Retry-After": "30"},
        )


async def _own_record(request: web.Request, permission: Permission) -> Record:
    require(request, permission)
    request_id = request.match_info["id"]
    if not _REQUEST_ID.match(request_id):
        raise _not_found()
    record = await request.app[STORE].get(request_id)
    if record is None or record.caller != request[CALLER]:
        raise _not_found()
    return record


# intake --------------------------------------------------------------------------------------
async def _parse_body(request: web.Request) -> ProvisionRequest:
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
        raise _invalid(
            "credentials",
            "cannot be accepted: this server has no PROVISIONER_ENCRYPTION_KEY configured",
        )
    return body


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not key.isprintable():
        raise Problem(
            400,
            "Invalid header",
            "Idempotency-Key must be 1-255 printable characters.",
            errors=[FieldError(field=IDEMPOTENCY_HEADER, reason="must be 1-255 characters")],
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
        raise _not_found()
    return _json(record.public(), entry.status, f"{BASE}/{record.id}")


def _new_record(body: ProvisionRequest, caller: str) -> Record:
    return Record(
        id=uuid4().hex,
        service_principal_id=body.service_principal_id,
        template_id=body.template_id,
        requested_template_id=body.template_id,
        start=body.start,
        has_credentials=bool(body.credentials),
        callback_url=body.callback_url,
        external_reference=body.external_reference,
        metadata=body.metadata,
        caller=caller,
    )


async def authorize_body(request: web.Request, body: ProvisionRequest, caller: str) -> None:
    """403 when the caller may not provision this principal/template; 422 for an unsafe
    ``callbackUrl`` (SSRF). Runs before anything is stored, so before any Graph call."""
    reason = request.app[POLICY].target_allowed(caller, body.service_principal_id, body.template_id)
    if reason is not None:
        raise _forbidden(reason[0].upper() + reason[1:] + ".")
    if body.callback_url is not None:
        why = await check_callback_url(body.callback_url, request.app[ALLOWLIST])
        if why is not None:
            raise _invalid("callbackUrl", why)


@routes.post(BASE)
async def create_request(request: web.Request) -> web.Response:
    """Accept a provisioning request: 202 when queued, 200 with the in-flight one for the app."""
    require(request, Permission.WRITE)
    caller = request[CALLER]
    await enforce_intake_limits(request, caller)
    body = await _parse_body(request)
    await authorize_body(request, body, caller)
    key = _idempotency_key(request)
    return await submit(request, body, caller, key, source="api")


async def submit(
    request: web.Request,
    body: ProvisionRequest,
    caller: str,
    key: str | None,
    *,
    source: str,
    ttl_s: int | None = None,
) -> web.Response:
    """Store and enqueue an authorized request (shared by the API and the webhooks)."""
    store = request.app[STORE]
    key_ttl_s = ttl_s or request.app[SETTINGS].idempotency_ttl_s
    body_fp = fingerprint(body.fingerprint_payload(), store.cipher)
    if key is not None:
        entry = await store.claim_idempotency_key(caller, key, body_fp, key_ttl_s)
        if entry is not None:
            return await replay(request, entry, body_fp)
    try:
        record, created = await store.accept(_new_record(body, caller), body.credentials)
    except Exception:
        if key is not None:
            # When Redis is down this fails too; the pending claim then expires within 30 s.
            with contextlib.suppress(Exception):
                await store.release_idempotency_key(caller, key)
        raise
    if record.caller != caller:
        # Another caller's request holds the app; its record is not this caller's to see.
        if key is not None:
            await store.release_idempotency_key(caller, key)
        raise _conflict(
            "A request for this service principal and template is already queued or running "
            "for another caller; try again once it has finished."
        )
    status = 202 if created else 200
    metrics = request.app[METRICS]
    counter = metrics.requests_accepted if created else metrics.requests_deduplicated
    counter.labels(source=source).inc()
    if key is not None:
        await store.complete_idempotency_key(caller, key, body_fp, status, record.id, key_ttl_s)
    return _json(record.public(), status, f"{BASE}/{record.id}")


# reads ---------------------------------------------------------------------------------------
@routes.get(BASE + "/{id}")
async def get_request(request: web.Request) -> web.Response:
    """One of the caller's records."""
    record = await _own_record(request, Permission.READ)
    return _json(record.public())


def _list_params(request: web.Request) -> tuple[State | None, str | None, str | None, int]:
    query = request.query
    unknown = sorted(set(query) - _LIST_PARAMS)
    if unknown:
        raise _invalid(unknown[0], "is not a known query parameter")
    state: State | None = None
    if "state" in query:
        try:
            state = State(query["state"])
        except ValueError:
            raise _invalid("state", f"must be one of {', '.join(s.value for s in State)}") from None
    principal: str | None = None
    if "servicePrincipalId" in query:
        try:
            principal = str(UUID(query["servicePrincipalId"]))
        except ValueError:
            raise _invalid("servicePrincipalId", "must be a GUID") from None
    limit = DEFAULT_LIMIT
    if "limit" in query:
        raw = query["limit"]
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
            raise _invalid("limit", f"must be an integer from 1 to {MAX_LIMIT}")
        limit = int(raw)
    return state, principal, query.get("cursor") or None, limit


@routes.get(BASE)
async def list_requests(request: web.Request) -> web.Response:
    """A page of the caller's records, newest first, with the cursor of the next page."""
    require(request, Permission.READ)
    state, principal, cursor, limit = _list_params(request)
    try:
        records, next_cursor = await request.app[STORE].list(
            state=state,
            service_principal_id=principal,
            caller=request[CALLER],
            cursor=cursor,
            limit=limit,
        )
    except ValueError:
        raise _invalid("cursor", "is not a cursor this API returned") from None
    return _json({"items": [r.public() for r in records], "nextCursor": next_cursor})


# actions -------------------------------------------------------------------------------------
@routes.post(BASE + "/{id}/cancel")
async def cancel_request(request: web.Request) -> web.Response:
    """Cancel a queued request at once, or a running one at its next step boundary."""
    record = await _own_record(request, Permission.WRITE)
    store = request.app[STORE]
    if record.state is State.CANCELLED:
        return _json(record.public())
    if record.state.terminal:
        raise _conflict(f"The request already {record.state.value}; it cannot be cancelled.")
    if record.state is State.QUEUED:
        record.state = State.CANCELLED
        record.add(
            HistoryEntry(step=None, outcome=Outcome.CANCELLED, at=utcnow(), message="cancelled")
        )
        await store.save(record)
    # Set after the save (which clears the flag): a worker that picked the job up meanwhile
    # still stops at its next step boundary.
    await store.request_cancel(record.id)
    return _json(record.public(), 202)


@routes.post(BASE + "/{id}/retry")
async def retry_request(request: web.Request) -> web.Response:
    """Re-drive a failed request from its last completed step."""
    record = await _own_record(request, Permission.WRITE)
    store = request.app[STORE]
    if record.state in {State.QUEUED, State.RUNNING}:
        return _json(record.public())
    if record.state is not State.FAILED:
        raise _conflict(f"The request {record.state.value}; only a failed request can be retried.")
    record.state = State.QUEUED
    record.error = None
    record.retry_until = None
    record.lag_since = None
    record.add(HistoryEntry(step=None, outcome=Outcome.REQUEUED, at=utcnow(), message="retry"))
    holder, requeued = await store.redrive(record)
    if not requeued:
        raise _conflict(
            f"Request {holder.id} for the same service principal and template is in flight; "
            "it must finish before this one can be retried."
        )
    return _json(record.public(), 202)


# operations ----------------------------------------------------------------------------------
@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """Alive: the process answers."""
    return _json({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Ready: Redis answers (else 503 + Retry-After from the problem middleware)."""
    await request.app[STORE].ping()
    return _json({"status": "ready"})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus counters."""
    return await metrics_response(request.app[METRICS], request.app[STORE])


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document of this API."""
    return _json(build_openapi())
