"""The route table and the middleware that applies latency, auth, faults and Graph error bodies."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

from sandbox import control, entra, graph, lifecycle, log_routes, onboarding_routes
from sandbox.context import CTX_KEY, SandboxConfig, SandboxContext, build_context
from sandbox.entra import TOKENS_KEY, InvalidToken, has_role, owned_only
from sandbox.faults import TOKEN_ROUTE
from sandbox.models import GraphError, not_found
from sandbox.provisioning_logs import AUDIT_LOG_ROLE

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
GRAPH_VERSIONS = ("v1.0", "beta")
SYNC = "/servicePrincipals/{sp}/synchronization"
ERROR_CODES = {
    400: "BadRequest",
    405: "MethodNotAllowed",
    429: "TooManyRequests",
    500: "UnknownError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}
ERROR_MESSAGES = {
    429: "Please retry again later.",
    500: "",
    502: "The server received an invalid response from an upstream server.",
    503: "The service is temporarily unavailable. Please retry later.",
    504: "The request timed out upstream.",
}


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    path: str  # below /v1.0 and /beta
    handler: Handler
    write: bool
    roles: frozenset[str] | None = None  # any one grants access; None: the sync roles
    principal_checks: bool = True  # the middleware's 404 / "new principal" 401 on {sp}


GRAPH_ROUTES: tuple[Route, ...] = (
    Route("templates.list", "GET", f"{SYNC}/templates", graph.list_templates, False),
    Route("jobs.list", "GET", f"{SYNC}/jobs", graph.list_jobs, False),
    Route("jobs.create", "POST", f"{SYNC}/jobs", graph.create_job, True),
    Route(
        "jobs.validateCredentialsCollection",
        "POST",
        f"{SYNC}/jobs/validateCredentials",
        graph.validate_credentials_collection,
        True,
    ),
    Route("jobs.get", "GET", f"{SYNC}/jobs/{{job}}", graph.get_job, False),
    Route("jobs.delete", "DELETE", f"{SYNC}/jobs/{{job}}", lifecycle.delete_job, True),
    Route("jobs.start", "POST", f"{SYNC}/jobs/{{job}}/start", graph.start_job, True),
    Route("jobs.pause", "POST", f"{SYNC}/jobs/{{job}}/pause", lifecycle.pause_job, True),
    Route("jobs.restart", "POST", f"{SYNC}/jobs/{{job}}/restart", lifecycle.restart_job, True),
    Route(
        "jobs.validateCredentials",
        "POST",
        f"{SYNC}/jobs/{{job}}/validateCredentials",
        graph.validate_credentials,
        True,
    ),
    Route(
        "jobs.provisionOnDemand",
        "POST",
        f"{SYNC}/jobs/{{job}}/provisionOnDemand",
        lifecycle.provision_on_demand,
        True,
    ),
    Route("secrets.put", "PUT", f"{SYNC}/secrets", graph.put_secrets, True),
    Route("secrets.get", "GET", f"{SYNC}/secrets", graph.get_secrets, False),
    *(Route(*r) for r in onboarding_routes.ROUTES),  # gallery, assignments, schema
    Route(
        "auditLogs.provisioning",
        "GET",
        "/auditLogs/provisioning",
        log_routes.list_provisioning,
        False,
        roles=frozenset({AUDIT_LOG_ROLE}),
        principal_checks=False,
    ),
)
ROUTE_BY_HANDLER: dict[object, Route] = {r.handler: r for r in GRAPH_ROUTES}
KNOWN_PATHS = tuple(
    re.compile(re.sub(r"\\{\w+\\}", "[^/]+", re.escape(r.path.lstrip("/"))) + "/?")
    for r in GRAPH_ROUTES
)
Kind = Literal["graph", "token", "other"]
REQUEST_ID = web.RequestKey("request_id", str)
LIMIT_PERCENTAGE = web.RequestKey("limit_percentage", str)


def _kind(request: web.Request) -> Kind:
    first = request.path.split("/", 2)[1]
    if first in GRAPH_VERSIONS:
        return "graph"
    if request.method == "POST" and request.path.endswith("/oauth2/v2.0/token"):
        return "token"
    return "other"


def graph_error(request: web.Request, err: GraphError) -> web.Response:
    request_id, client_request_id = _ids(request)
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    inner = {"date": date, "request-id": request_id, "client-request-id": client_request_id}
    body = {"error": {"code": err.code, "message": err.message, "innerError": inner}}
    return graph.graph_json(body, status=err.status)


def _ids(request: web.Request) -> tuple[str, str]:
    request_id = request.get(REQUEST_ID)
    if request_id is None:
        request_id = str(uuid.uuid4())
        request[REQUEST_ID] = request_id
    return request_id, request.headers.get("client-request-id") or request_id


def injected(status: int) -> GraphError:
    return GraphError(status, ERROR_CODES[status], ERROR_MESSAGES[status])


async def _graph_call(
    request: web.Request, ctx: SandboxContext, route: Route | None, handler: Handler
) -> web.StreamResponse:
    name = route.name if route else "unknown"
    ctx.state.stats.arrived[name] += 1
    delay = ctx.engine.latency_s(name)
    if delay > 0:
        await asyncio.sleep(delay)
    if route is None:
        _method_not_allowed(request)
        return await handler(request)
    claims = _authorize(request, ctx, route)
    _tenant_faults(request, ctx, str(claims["tid"]))
    _random_fault(ctx, name)
    if route.principal_checks:
        _principal_faults(request, ctx, route, claims)
    return await handler(request)


def _method_not_allowed(request: web.Request) -> None:
    """A known path asked with a method it does not take: Graph's 405."""
    if any(p.fullmatch(request.path.split("/", 2)[2]) for p in KNOWN_PATHS):
        raise GraphError(
            405,
            "MethodNotAllowed",
            f"The requested resource does not support http method '{request.method}'.",
        )


def _authorize(request: web.Request, ctx: SandboxContext, route: Route) -> dict[str, Any]:
    """The bearer token's claims, when they carry a role the route needs (else 401/403)."""
    try:
        claims = ctx.tokens.verify(request.headers.get("Authorization"))
    except InvalidToken as exc:
        raise GraphError(401, "InvalidAuthenticationToken", str(exc)) from exc
    if route.roles is not None:  # the directory APIs (instantiate, assignments) answer 403
        if not set(claims.get("roles") or ()) & route.roles:
            raise GraphError(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            )
    elif not has_role(claims, write=route.write):
        # What real Graph answers the synchronization API without a permission: not 403.
        ctx.state.stats.faults["no_permission"] += 1
        raise _unknown_401()
    return claims


def _tenant_faults(request: web.Request, ctx: SandboxContext, tenant: str) -> None:
    """The tenant's rate limit (429) and its throttle usage header."""
    wait = ctx.engine.rate_limited(tenant)
    if wait is not None:
        ctx.state.stats.faults["rate_limited"] += 1
        raise _throttled(ctx, wait)
    usage = ctx.engine.limit_percentage(tenant)
    if usage is not None:
        request[LIMIT_PERCENTAGE] = usage


def _random_fault(ctx: SandboxContext, name: str) -> None:
    """The fault profile's random error for this route, if it draws one."""
    status = ctx.engine.random_error(name)
    if status is not None:
        ctx.state.stats.faults[str(status)] += 1
        if status in (429, 503):
            raise _throttled(ctx, ctx.engine.profile.retry_after_s, status)
        raise injected(status)


def _principal_faults(
    request: web.Request, ctx: SandboxContext, route: Route, claims: dict[str, Any]
) -> None:
    """A new principal's 401, a new job's replication lag, a start's 409 conflict."""
    engine, state = ctx.engine, ctx.state
    sp_id = request.match_info["sp"]
    state.principal(sp_id)
    if owned_only(claims, write=route.write) and not state.may_touch(
        sp_id, str(claims.get("appid", ""))
    ):
        state.stats.faults["not_owner"] += 1
        raise _unknown_401()
    if state.is_new(sp_id):
        state.stats.faults["new_principal"] += 1
        raise GraphError(401, "UnknownError", "")
    job_id = request.match_info.get("job")
    job = state.find_job(sp_id, job_id) if job_id else None
    if job is not None and engine.in_replication_lag(job.created_at):
        state.stats.faults["replication_lag"] += 1
        raise not_found(job.id)
    if job is not None and route.name == "jobs.start" and engine.start_conflict(job.id):
        state.stats.faults["start_conflict"] += 1
        raise GraphError(
            409,
            "Conflict",
            "The synchronization job is being updated by another "
            "operation. Retry the request later.",
        )


def _unknown_401() -> GraphError:
    return GraphError(401, "UnknownError", "")


class _Throttled(GraphError):
    def __init__(self, status: int, retry_after: str | None) -> None:
        super().__init__(status, ERROR_CODES[status], ERROR_MESSAGES[status])
        self.retry_after = retry_after


def _throttled(ctx: SandboxContext, seconds: float, status: int = 429) -> _Throttled:
    return _Throttled(status, ctx.engine.retry_after(seconds))


async def _drop_connection(request: web.Request) -> None:
    """Lose the response: the work is done, the client sees a reset/disconnect."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    raise asyncio.CancelledError


@web.middleware
async def sandbox_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    ctx = request.app[CTX_KEY]
    kind = _kind(request)
    if kind == "other":
        return await handler(request)
    if kind == "token":
        return await _token_call(request, ctx, handler)
    route = ROUTE_BY_HANDLER.get(request.match_info.route.handler)
    name = route.name if route else "unknown"
    try:
        response = await _graph_call(request, ctx, route, handler)
    except _Throttled as err:
        response = graph_error(request, err)
        if err.retry_after is not None:
            response.headers["Retry-After"] = err.retry_after
    except GraphError as err:
        response = graph_error(request, err)
        retry_after = getattr(err, "retry_after", None)  # lifecycle's provisionOnDemand 429
        if isinstance(retry_after, str):
            response.headers["Retry-After"] = retry_after
    request_id, client_request_id = _ids(request)
    response.headers["request-id"] = request_id
    response.headers["client-request-id"] = client_request_id
    if LIMIT_PERCENTAGE in request and response.status != 429:
        response.headers["x-ms-throttle-limit-percentage"] = request[LIMIT_PERCENTAGE]
    if name == "jobs.create" and response.status < 300 and ctx.engine.create_5xx_after_made():
        # The job is made; the answer says it failed (the ambiguous 5xx clients must list after).
        ctx.state.stats.faults["5xx_after_made"] += 1
        response = graph_error(request, injected(500))
        response.headers["request-id"] = request_id
        response.headers["client-request-id"] = client_request_id
    ctx.state.stats.record_call(name, response.status)
    if name == "jobs.create" and response.status < 300 and ctx.engine.lose_create():
        ctx.state.stats.faults["lost_response"] += 1
        await _drop_connection(request)
    return response


async def _token_call(
    request: web.Request, ctx: SandboxContext, handler: Handler
) -> web.StreamResponse:
    delay = ctx.engine.latency_s(TOKEN_ROUTE)
    if delay > 0:
        await asyncio.sleep(delay)
    status = ctx.engine.random_error(TOKEN_ROUTE)
    if status is not None:
        ctx.state.stats.faults[str(status)] += 1
        response: web.StreamResponse = entra.token_fault_response(request, status)
    else:
        response = await handler(request)
    ctx.state.stats.record_call(TOKEN_ROUTE, response.status)
    return response


def create_app(config: SandboxConfig) -> web.Application:
    ctx = build_context(config)
    app = web.Application(middlewares=[sandbox_middleware])
    app[CTX_KEY] = ctx
    app[TOKENS_KEY] = ctx.tokens
    router = app.router
    tenant = "/{tenant}"
    router.add_get(f"{tenant}/v2.0/.well-known/openid-configuration", entra.discovery_handler)
    router.add_get(f"{tenant}/discovery/v2.0/keys", entra.jwks_handler)
    router.add_post(f"{tenant}/oauth2/v2.0/token", entra.token_handler)
    app[lifecycle.LIFECYCLE_KEY] = lifecycle.LifecycleState()
    for method, path, handler in (
        *control.ROUTES,
        *lifecycle.CONTROL_ROUTES,
        *log_routes.CONTROL_ROUTES,
    ):
        router.add_route(method, path, handler)
    for version in GRAPH_VERSIONS:
        for route in GRAPH_ROUTES:
            for suffix in ("", "/"):
                router.add_route(route.method, f"/{version}{route.path}{suffix}", route.handler)
        router.add_route("*", f"/{version}/{{tail:.*}}", graph.unknown_path)
    return app
