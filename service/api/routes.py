"""The intake API's handlers (contract: ``docs/api.md``, built from :mod:`service.api.openapi`).

Each handler carries its OpenAPI operation (:func:`~service.api.openapi.meta.operation`) and
parses its parameters with the models of :mod:`service.api.params`, which the document renders.
Request ids are ``uuid4().hex``. Callers see their own records; another caller's id answers
404, exactly like an unknown one, unless the caller holds ``operator`` (see
:mod:`service.api.access`). What a new request passes before it is stored is in
:mod:`service.api.intake`; retries and cancels pass the same permission, target policy and
rate limit (retries the queue cap too).
"""

from __future__ import annotations

from aiohttp import web

from service.api.access import (
    authorize_action,
    list_caller,
    not_found,
    require,
    visible_record,
)
from service.api.auth.keys import CALLER
from service.api.auth.policy import Permission
from service.api.intake import (
    BASE,
    IDEMPOTENCY_HEADER,
    authorize_body,
    conflict,
    enforce_intake_limits,
    idempotency_key,
    invalid,
    json_response,
    page_response,
    parse_body,
    submit,
)
from service.api.metrics import metrics_response
from service.api.openapi import build_openapi
from service.api.openapi.meta import Body, Header, operation
from service.api.params import IDEMPOTENCY_KEY_MAX, ListParams, RequestPath, parse_list_params
from service.api.state import METRICS, STORE
from service.core.fields import utcnow
from service.core.models import HistoryEntry, Outcome, Record, State, Step
from service.core.request import ProvisionRequest

routes = web.RouteTableDef()

RECORD = Body("Record")
RECORD_AT = Body("Record", location=True)
JSON = Body()
_ACTION_PROBLEMS = (401, 403, 404, 409, 429, 503)


async def _acted_on(request: web.Request, *, queue_cap: bool) -> Record:
    """The record a retry or cancel acts on, once the caller may act on it and is within its
    intake rate (and, with ``queue_cap``, the queue is not full)."""
    record = await visible_record(request, request.match_info["id"], Permission.WRITE)
    authorize_action(request, record)
    await enforce_intake_limits(request, request[CALLER], queue_cap=queue_cap)
    return record


@routes.post(BASE)
@operation(
    "createProvisioningRequest",
    "Ask for provisioning of a service principal",
    ok={202: RECORD_AT, 200: RECORD_AT},
    problems=(400, 401, 403, 404, 409, 413, 415, 422, 429, 503),
    body=ProvisionRequest,
    headers=(
        Header(
            IDEMPOTENCY_HEADER,
            f"1-{IDEMPOTENCY_KEY_MAX} printable characters, scoped to the caller, kept 24 h.",
            {"type": "string", "minLength": 1, "maxLength": IDEMPOTENCY_KEY_MAX},
        ),
    ),
    description=(
        "202 when stored and queued. While the caller's own request for the same "
        "(servicePrincipalId, templateId) is queued or running, the same body answers 200 with "
        "that record and a different body 409 `request-in-flight` naming it (Location). While "
        "another caller's request holds the app, this one is accepted (202) and queued behind "
        "it, as any new request is: nothing tells one caller about another's work. With "
        "`Idempotency-Key`, the same key and body replay the first response, another body "
        "gives 422 and a still-running first request 409. 403 when the caller's access policy "
        "does not allow writes, this service principal or template; 429 past the caller's "
        "rate limit and 503 when the queue is full (both with Retry-After). A `callbackUrl` "
        "must be https and must not resolve to a loopback, private, link-local or metadata "
        "address (422). GUIDs have one form (8-4-4-4-12 ASCII hex, returned lowercase); "
        "`externalReference` and `metadata` refuse control and bidirectional characters; "
        "credential keys are Graph's synchronizationSecret names (422 naming the field)."
    ),
)
async def create_request(request: web.Request) -> web.Response:
    require(request, Permission.WRITE)
    caller = request[CALLER]
    await enforce_intake_limits(request, caller)
    body = await parse_body(request)
    await authorize_body(request, body, caller)
    key = idempotency_key(request)
    return await submit(request, body, caller, key, source="api")


# reads ---------------------------------------------------------------------------------------
@routes.get(BASE + "/{id}")
@operation(
    "getProvisioningRequest",
    "One request (the caller's own; any caller's with `operator`)",
    ok={200: RECORD},
    problems=(401, 403, 404, 503),
    path=RequestPath,
)
async def get_request(request: web.Request) -> web.Response:
    record = await visible_record(request, request.match_info["id"], Permission.READ)
    return json_response(record.public())


@routes.get(BASE)
@operation(
    "listProvisioningRequests",
    "A page of requests, newest first",
    ok={200: Body("RecordPage")},
    problems=(401, 403, 422, 503),
    query=ListParams,
    description=(
        "The caller's own requests. A caller with the `operator` permission sees every "
        "caller's (ticket requests made by `webhook:*` callers among them), or one caller's "
        "with `caller`. A listing reads only the indexes of the callers it shows, so its cost "
        "does not grow with other callers' records."
    ),
)
async def list_requests(request: web.Request) -> web.Response:
    require(request, Permission.READ)
    params = parse_list_params(request.query)
    try:
        records, next_cursor = await request.app[STORE].list(
            state=params.state,
            service_principal_id=params.service_principal_id,
            caller=list_caller(request, params),
            cursor=params.cursor,
            limit=params.limit,
        )
    except ValueError:
        raise invalid("cursor", "is not a cursor this API returned") from None
    return page_response([r.public() for r in records], next_cursor)


# actions -------------------------------------------------------------------------------------
@routes.post(BASE + "/{id}/cancel")
@operation(
    "cancelProvisioningRequest",
    "Cancel a queued or running request",
    ok={202: RECORD, 200: RECORD},
    problems=_ACTION_PROBLEMS,
    path=RequestPath,
    description=(
        "202 only when the request will end `cancelled`: a queued one at once, a running one "
        "at its next wait or step boundary (a job already started stays started). Already "
        "cancelled: 200. Succeeded or failed: 409, saying when. Needs `write`, "
        "the target policy of the caller and of the request's owner (403) and passes the "
        "caller's intake rate limit (429)."
    ),
)
async def cancel_request(request: web.Request) -> web.Response:
    """Cancel a request: 202 only when it will end ``cancelled`` (a queued one at once, a
    running one at its next wait or step boundary, and the worker's final save honours the
    flag atomically); 409 once it succeeded or failed. A started job stays started."""
    record = await _acted_on(request, queue_cap=False)

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
@operation(
    "retryProvisioningRequest",
    "Re-drive a failed request from its last completed step",
    ok={202: RECORD, 200: RECORD},
    problems=_ACTION_PROBLEMS,
    path=RequestPath,
    description=(
        "Failed: 202. Already queued or running: 200. Succeeded or cancelled: 409; 409 too "
        "while the same caller's other request for the app is in flight. A retry passes "
        "what a new request passes: `write`, the target policy of the caller and of the "
        "request's owner (403), the caller's intake rate limit (429) and the queue cap (503)."
    ),
)
async def retry_request(request: web.Request) -> web.Response:
    record = await _acted_on(request, queue_cap=True)
    store = request.app[STORE]
    if record.state in {State.QUEUED, State.RUNNING}:
        return json_response(record.public())
    if record.state is not State.FAILED:
        raise conflict(f"The request {record.state.value}; only a failed request can be retried.")
    record.state = State.QUEUED
    record.error = None
    record.retry_until = None
    record.lag_since = None
    # a (re)start step that runs again reads the job again before its POST
    record.cycles_seen = {k: v for k, v in record.cycles_seen.items() if record.done(Step(k))}
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
@operation("healthz", "Liveness", ok={200: JSON}, public=True)
async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@routes.get("/readyz")
@operation("readyz", "Readiness: Redis answers", ok={200: JSON}, problems=(503,), public=True)
async def readyz(request: web.Request) -> web.Response:
    await request.app[STORE].ping()
    return json_response({"status": "ready"})


@routes.get("/metrics")
@operation(
    "metrics",
    "Prometheus counters (text format 0.0.4)",
    ok={200: Body(content_type="text/plain")},
    public=True,
)
async def metrics(request: web.Request) -> web.Response:
    return await metrics_response(request.app[METRICS], request.app[STORE])


@routes.get("/openapi.json")
@operation("openapi", "This document", ok={200: JSON}, public=True)
async def openapi(request: web.Request) -> web.Response:
    return json_response(build_openapi())
