"""The sandbox's aiohttp app: the route table, and the middleware that applies latency, auth,
faults and Graph error bodies to each call."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Literal

from aiohttp import web

from sandbox import control, entra, graph, lifecycle, log_routes
from sandbox.checks import (
    LIMIT_PERCENTAGE,
    Throttled,
    authorize,
    injected,
    method_not_allowed,
    principal_faults,
    random_fault,
    tenant_faults,
)
from sandbox.context import CTX_KEY, SandboxConfig, SandboxContext, build_context
from sandbox.entra import TOKENS_KEY
from sandbox.faults import TOKEN_ROUTE
from sandbox.models import GraphError
from sandbox.routes import GRAPH_ROUTES, GRAPH_VERSIONS, ROUTE_BY_HANDLER, Handler, Route

Kind = Literal["graph", "token", "other"]
REQUEST_ID = web.RequestKey("request_id", str)


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


async def _graph_call(
    request: web.Request, ctx: SandboxContext, route: Route | None, handler: Handler
) -> web.StreamResponse:
    name = route.name if route else "unknown"
    ctx.state.stats.arrived[name] += 1
    delay = ctx.engine.latency_s(name)
    if delay > 0:
        await asyncio.sleep(delay)
    if route is None:
        method_not_allowed(request)
        return await handler(request)
    claims = authorize(request, ctx, route)
    tenant_faults(request, ctx, str(claims["tid"]))
    random_fault(ctx, name)
    if route.principal_checks:
        principal_faults(request, ctx, route, claims)
    return await handler(request)


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
    except Throttled as err:
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
