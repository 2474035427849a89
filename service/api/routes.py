"""The intake API's handlers (contract: ``docs/api.md``, built from :mod:`service.api.openapi`).

Request ids are ``uuid4().hex``: 32 lowercase hex digits, no dashes, so they are never mistaken
for a service principal's GUID when quoted in a ticket. Callers only ever see their own records:
another caller's id answers 404, exactly like an unknown one. What a new request passes before
it is stored is in :mod:`service.api.intake`; the application state in :mod:`service.api.state`.
"""

from __future__ import annotations

import re
from uuid import UUID

from aiohttp import web

from service.api.auth.keys import CALLER
from service.api.auth.policy import Permission
from service.api.intake import (
    BASE,
    authorize_body,
    conflict,
    enforce_intake_limits,
    idempotency_key,
    invalid,
    json_response,
    not_found,
    parse_body,
    require,
    submit,
)
from service.api.metrics import metrics_response
from service.api.openapi import build_openapi
from service.api.state import METRICS, STORE
from service.core.models import HistoryEntry, Outcome, Record, State, utcnow

MAX_LIMIT = 200
DEFAULT_LIMIT = 50
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_LIST_PARAMS = frozenset({"state", "servicePrincipalId", "cursor", "limit"})

routes = web.RouteTableDef()


async def _own_record(request: web.Request, permission: Permission) -> Record:
    require(request, permission)
    request_id = request.match_info["id"]
    if not _REQUEST_ID.match(request_id):
        raise not_found()
    record = await request.app[STORE].get(request_id)
    if record is None or record.caller != request[CALLER]:
        raise not_found()
    return record


@routes.post(BASE)
async def create_request(request: web.Request) -> web.Response:
    """Accept a provisioning request: 202 when queued, 200 with the in-flight one for the app."""
    require(request, Permission.WRITE)
    caller = request[CALLER]
    await enforce_intake_limits(request, caller)
    body = await parse_body(request)
    await authorize_body(request, body, caller)
    key = idempotency_key(request)
    return await submit(request, body, caller, key, source="api")


# reads ---------------------------------------------------------------------------------------
@routes.get(BASE + "/{id}")
async def get_request(request: web.Request) -> web.Response:
    """One of the caller's records."""
    record = await _own_record(request, Permission.READ)
    return json_response(record.public())


def _list_params(request: web.Request) -> tuple[State | None, str | None, str | None, int]:
    query = request.query
    unknown = sorted(set(query) - _LIST_PARAMS)
    if unknown:
        raise invalid(unknown[0], "is not a known query parameter")
    state: State | None = None
    if "state" in query:
        try:
            state = State(query["state"])
        except ValueError:
            raise invalid("state", f"must be one of {', '.join(s.value for s in State)}") from None
    principal: str | None = None
    if "servicePrincipalId" in query:
        try:
            principal = str(UUID(query["servicePrincipalId"]))
        except ValueError:
            raise invalid("servicePrincipalId", "must be a GUID") from None
    limit = DEFAULT_LIMIT
    if "limit" in query:
        raw = query["limit"]
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
            raise invalid("limit", f"must be an integer from 1 to {MAX_LIMIT}")
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
        raise invalid("cursor", "is not a cursor this API returned") from None
    return json_response({"items": [r.public() for r in records], "nextCursor": next_cursor})


# actions -------------------------------------------------------------------------------------
@routes.post(BASE + "/{id}/cancel")
async def cancel_request(request: web.Request) -> web.Response:
    """Cancel a request: 202 only when it will end ``cancelled`` (a queued one at once, a
    running one at its next wait or step boundary, and the worker's final save honours the
    flag atomically); 409 once it succeeded or failed. A started job stays started."""
    record = await _own_record(request, Permission.WRITE)

    def cancel_queued(queued: Record) -> None:
        queued.state = State.CANCELLED
        queued.add(
            HistoryEntry(step=None, outcome=Outcome.CANCELLED, at=utcnow(), message="cancelled")
        )

    current, outcome = await request.app[STORE].cancel(record.id, cancel_queued)
    if current is None:
        raise not_found()
    if outcome == "already":
        return json_response(current.public())
    if outcome == "too_late":
        job = f" Job {current.job_id} stays in the tenant as it is." if current.job_id else ""
        raise conflict(
            f"The request already {current.state.value} at {current.updated_at.isoformat()}; "
            f"it cannot be cancelled any more.{job}"
        )
    return json_response(current.public(), 202)


@routes.post(BASE + "/{id}/retry")
async def retry_request(request: web.Request) -> web.Response:
    """Re-drive a failed request from its last completed step."""
    record = await _own_record(request, Permission.WRITE)
    store = request.app[STORE]
    if record.state in {State.QUEUED, State.RUNNING}:
        return json_response(record.public())
    if record.state is not State.FAILED:
        raise conflict(f"The request {record.state.value}; only a failed request can be retried.")
    record.state = State.QUEUED
    record.error = None
    record.retry_until = None
    record.lag_since = None
    record.add(HistoryEntry(step=None, outcome=Outcome.REQUEUED, at=utcnow(), message="retry"))
    holder, requeued = await store.redrive(record)
    if not requeued:
        raise conflict(
            f"Request {holder.id} for the same service principal and template is in flight; "
            "it must finish before this one can be retried."
        )
    return json_response(record.public(), 202)


# operations ----------------------------------------------------------------------------------
@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """Alive: the process answers."""
    return json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Ready: Redis answers (else 503 + Retry-After from the problem middleware)."""
    await request.app[STORE].ping()
    return json_response({"status": "ready"})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus counters."""
    return await metrics_response(request.app[METRICS], request.app[STORE])


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document of this API."""
    return json_response(build_openapi())
