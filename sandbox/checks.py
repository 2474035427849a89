"""The checks a Graph call passes before its handler runs, in the order Graph makes them: the
path and method, the token and its roles, the tenant's rate limit, the fault profile's random
error, and the principal's own faults (ownership, a new principal, a new job's replication lag,
a start's conflict). Each raises the :class:`~sandbox.models.GraphError` Graph would answer."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from sandbox.context import SandboxContext
from sandbox.entra import InvalidToken, has_role, owned_only
from sandbox.models import GraphError, not_found
from sandbox.routes import KNOWN_PATHS, Route

LIMIT_PERCENTAGE = web.RequestKey("limit_percentage", str)
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


def injected(status: int) -> GraphError:
    return GraphError(status, ERROR_CODES[status], ERROR_MESSAGES[status])


def method_not_allowed(request: web.Request) -> None:
    """A known path asked with a method it does not take: Graph's 405."""
    if any(p.fullmatch(request.path.split("/", 2)[2]) for p in KNOWN_PATHS):
        raise GraphError(
            405,
            "MethodNotAllowed",
            f"The requested resource does not support http method '{request.method}'.",
        )


def authorize(request: web.Request, ctx: SandboxContext, route: Route) -> dict[str, Any]:
    """The bearer token's claims, when they carry a role the route needs (else 401/403)."""
    try:
        claims = ctx.tokens.verify(request.headers.get("Authorization"))
    except InvalidToken as exc:
        raise GraphError(401, "InvalidAuthenticationToken", str(exc)) from exc
    if route.roles is not None:  # the directory APIs (instantiate, assignments) answer 403
        held = set(claims.get("roles") or ())
        if not held & route.roles or (route.also_roles and not held & route.also_roles):
            raise GraphError(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            )
    elif not has_role(claims, write=route.write):
        # What real Graph answers the synchronization API without a permission: not 403.
        ctx.state.stats.faults["no_permission"] += 1
        raise unknown_401()
    return claims


def tenant_faults(request: web.Request, ctx: SandboxContext, tenant: str) -> None:
    """The tenant's rate limit (429) and its throttle usage header."""
    wait = ctx.engine.rate_limited(tenant)
    if wait is not None:
        ctx.state.stats.faults["rate_limited"] += 1
        raise throttled(ctx, wait)
    usage = ctx.engine.limit_percentage(tenant)
    if usage is not None:
        request[LIMIT_PERCENTAGE] = usage


def random_fault(ctx: SandboxContext, name: str) -> None:
    """The fault profile's random error for this route, if it draws one."""
    status = ctx.engine.random_error(name)
    if status is not None:
        ctx.state.stats.faults[str(status)] += 1
        if status in (429, 503):
            raise throttled(ctx, ctx.engine.profile.retry_after_s, status)
        raise injected(status)


def principal_faults(
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
        raise unknown_401()
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


def unknown_401() -> GraphError:
    return GraphError(401, "UnknownError", "")


class Throttled(GraphError):
    def __init__(self, status: int, retry_after: str | None) -> None:
        super().__init__(status, ERROR_CODES[status], ERROR_MESSAGES[status])
        self.retry_after = retry_after


def throttled(ctx: SandboxContext, seconds: float, status: int = 429) -> Throttled:
    return Throttled(status, ctx.engine.retry_after(seconds))
