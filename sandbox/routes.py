"""The sandbox's Graph route table: each route's name (as the fault profile and the call
counters know it), method, path below ``/v1.0`` and ``/beta``, handler and the roles it needs."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from sandbox import graph, lifecycle, log_routes, onboarding_routes
from sandbox.provisioning_logs import AUDIT_LOG_ROLE

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
GRAPH_VERSIONS = ("v1.0", "beta")
SYNC = "/servicePrincipals/{sp}/synchronization"


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    path: str  # below /v1.0 and /beta
    handler: Handler
    write: bool
    roles: frozenset[str] | None = None  # any one grants access; None: the sync roles
    principal_checks: bool = True  # the middleware's 404 / "new principal" 401 on {sp}
    also_roles: frozenset[str] | None = None  # a second requirement: one of these as well


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
