"""Handlers of the gallery, principal, app role assignment and schema endpoints, and their
route table (merged into ``sandbox.routes.GRAPH_ROUTES``). The middleware authenticates, checks
the roles named here and injects the global faults; the gallery faults are applied here."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from sandbox.context import CTX_KEY, SandboxContext
from sandbox.gallery import GalleryState
from sandbox.graph import _body, graph_json, no_content, page_of
from sandbox.models import GraphError, bad_request

SYNC = "/servicePrincipals/{sp}/synchronization"
READ_APPS = frozenset(
    {
        "Application.Read.All",
        "Application.ReadWrite.All",
        "Application.ReadWrite.OwnedBy",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
        "Synchronization.Read.All",
        "Synchronization.ReadWrite.All",
    }
)
INSTANTIATE = frozenset(
    {"Application.ReadWrite.OwnedBy", "Application.ReadWrite.All", "Directory.ReadWrite.All"}
)
# post appRoleAssignedTo: "AppRoleAssignment.ReadWrite.All and Application.Read.All,
# AppRoleAssignment.ReadWrite.All and Directory.Read.All" (the ReadWrite forms include the reads)
ASSIGN = frozenset({"AppRoleAssignment.ReadWrite.All"})
ASSIGN_ALSO = frozenset(
    {
        "Application.Read.All",
        "Directory.Read.All",
        "Application.ReadWrite.All",
        "Directory.ReadWrite.All",
    }
)


def _ctx(request: web.Request) -> SandboxContext:
    return request.app[CTX_KEY]


def _gallery(request: web.Request) -> GalleryState:
    return _ctx(request).state.gallery


def _context(request: web.Request, suffix: str) -> str:
    return f"https://{request.host}/{request.path.split('/')[1]}/$metadata#{suffix}"


def paged(request: web.Request, items: list[dict[str, Any]], context: str) -> web.Response:
    """One page of ``items`` of a top-level collection (``context`` is its name)."""
    return page_of(request, items, _context(request, context))


async def list_templates(request: web.Request) -> web.Response:
    items = _gallery(request).list_templates(request.query.get("$filter"))
    return paged(request, items, "applicationTemplates")


async def get_template(request: web.Request) -> web.Response:
    gallery = _gallery(request)
    body = gallery.template_json(gallery.template(request.match_info["tpl"]))
    return graph_json({"@odata.context": _context(request, "applicationTemplates/$entity"), **body})


async def instantiate(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    gallery, faults = ctx.state.gallery, ctx.engine.profile.gallery
    gallery.template(request.match_info["tpl"])
    data = await _body(request, required=True)
    name = data.get("displayName")
    if not isinstance(name, str) or not name.strip():
        raise bad_request("The 'displayName' property is required.")
    made = gallery.instantiate(request.match_info["tpl"], name, faults.new_principal_lag_ms)
    if faults.instantiate_delay_ms > 0:
        await asyncio.sleep(faults.instantiate_delay_ms / 1000)
    draw = ctx.engine.rng.random()
    if draw < faults.lost_instantiate_rate:
        gallery.stats["instantiate_lost"] += 1
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError
    if draw < faults.lost_instantiate_rate + faults.instantiate_5xx_rate:
        gallery.stats["instantiate_5xx"] += 1
        status = (500, 503)[gallery.stats["instantiate_5xx"] % 2]
        raise GraphError(status, "UnknownError" if status == 500 else "ServiceUnavailable", "")
    body = {"@odata.context": _context(request, "microsoft.graph.applicationServicePrincipal")}
    return graph_json({**body, **gallery.instantiate_json(made)}, status=201)


async def list_principals(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    lag = ctx.engine.profile.gallery.principal_list_lag_ms
    items = ctx.state.gallery.list_principals(request.query.get("$filter"), lag)
    return paged(request, items, "servicePrincipals")


async def get_principal(request: web.Request) -> web.Response:
    gallery, sp = _gallery(request), request.match_info["sp"]
    gallery.visible(sp)
    body = {"@odata.context": _context(request, "servicePrincipals/$entity")}
    return graph_json({**body, **gallery.principal_json(sp)})


async def list_assigned_to(request: web.Request) -> web.Response:
    gallery, sp = _gallery(request), request.match_info["sp"]
    gallery.visible(sp)
    return paged(
        request, gallery.assignments.of(sp), f"servicePrincipals('{sp}')/appRoleAssignedTo"
    )


async def add_assigned_to(request: web.Request) -> web.Response:
    gallery, sp = _gallery(request), request.match_info["sp"]
    gallery.visible(sp)
    principal = gallery.principal_json(sp)
    data = await _body(request, required=True)
    roles = [str(r["id"]) for r in principal["appRoles"] if r.get("isEnabled")]
    made = gallery.assignments.add(
        principal["id"], principal["displayName"], principal["appId"], roles, data
    )
    body = {"@odata.context": _context(request, "appRoleAssignments/$entity")}
    return graph_json({**body, **made}, status=201)


def _job_schema_args(request: web.Request) -> tuple[GalleryState, str, str, dict[str, list[str]]]:
    ctx = _ctx(request)
    job = ctx.state.job(request.match_info["sp"], request.match_info["job"])
    name, targets = ctx.state.gallery.target(request.match_info["sp"])
    return ctx.state.gallery, job.id, name, targets


async def get_schema(request: web.Request) -> web.Response:
    gallery, job_id, name, targets = _job_schema_args(request)
    schema = gallery.schemas.get(job_id, name, targets)
    context = _context(request, "synchronizationSchema/$entity")
    return graph_json({"@odata.context": context, **schema})


async def put_schema(request: web.Request) -> web.Response:
    gallery, job_id, name, targets = _job_schema_args(request)
    data: dict[str, Any] = await _body(request, required=True)
    gallery.schemas.put(job_id, name, targets, data)
    return no_content()


T = "/applicationTemplates"
P = "/servicePrincipals"
# (name, method, path, handler, write, roles or None, principal checks by the middleware[,
# also_roles]): sandbox.routes.Route's fields
ROUTES: tuple[tuple[Any, ...], ...] = (
    ("applicationTemplates.list", "GET", T, list_templates, False, READ_APPS, False),
    ("applicationTemplates.get", "GET", f"{T}/{{tpl}}", get_template, False, READ_APPS, False),
    ("applicationTemplates.instantiate", "POST", f"{T}/{{tpl}}/instantiate", instantiate,
     True, INSTANTIATE, False),
    ("servicePrincipals.list", "GET", P, list_principals, False, READ_APPS, False),
    ("servicePrincipals.get", "GET", f"{P}/{{sp}}", get_principal, False, READ_APPS, False),
    ("appRoleAssignedTo.list", "GET", f"{P}/{{sp}}/appRoleAssignedTo", list_assigned_to,
     False, READ_APPS, False),
    ("appRoleAssignedTo.add", "POST", f"{P}/{{sp}}/appRoleAssignedTo", add_assigned_to,
     True, ASSIGN, False, ASSIGN_ALSO),
    ("schema.get", "GET", f"{SYNC}/jobs/{{job}}/schema", get_schema, False, None, True),
    ("schema.put", "PUT", f"{SYNC}/jobs/{{job}}/schema", put_schema, True, None, True),
)  # fmt: skip
