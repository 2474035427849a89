"""``GET /v1/applications/{servicePrincipalId}`` and ``GET /v1/applications``: what the health
watch knows about each application (service principal) whose job this service started or
adopted, under the caller's policy.

An application is visible to a caller with ``read`` whose policy allows it the principal (for
one of the application's templates) and either one of whose requests touched it, or whose
policy entry names the principal itself (its GUID or a tag holding it; ``*`` alone does not
show other callers' applications). Anything else answers 404, exactly like an unknown one.
The records come from :class:`~service.core.application_store.ApplicationStore`, which the
status page can read the same way (:func:`visible_to`, ``list``, ``get``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError
from pydantic.alias_generators import to_camel
from pydantic.json_schema import models_json_schema

from service.api.access import require
from service.api.auth.keys import CALLER
from service.api.auth.policy import TAG_PREFIX, AccessPolicy, Permission
from service.api.intake import json_response, page_response
from service.api.openapi.meta import Body, operation
from service.api.params import ApplicationListParams, ApplicationPath, parse_application_params
from service.api.problems import Problem
from service.api.state import POLICY, STORE
from service.core.application_store import ApplicationStore
from service.core.applications import JOB_INTERNAL, Application, WatchedJob
from service.core.models import Record

BASE = "/v1/applications"
MAX_REQUESTS_SHOWN = 20

routes = web.RouteTableDef()


def visible_to(policy: AccessPolicy, caller: str) -> Callable[[Application], bool]:
    """Whether ``caller`` may see an application (see the module's docstring)."""
    entry = policy.entry(caller)

    def visible(app: Application) -> bool:
        if entry is None:
            return False
        sp = app.service_principal_id
        templates = [j.template_id for j in app.jobs] or [None]
        if all(policy.target_allowed(caller, sp, t) is not None for t in templates):
            return False
        named = any(
            target == sp
            or (target.startswith(TAG_PREFIX) and sp in policy.tags.get(target[4:], ()))
            for target in entry.service_principals
        )
        return caller in app.callers or named

    return visible


def not_found() -> Problem:
    return Problem(404, "Not Found", "No application with this service principal id.")


def view(app: Application, requests: list[Record] | None = None) -> dict[str, Any]:
    """The application as the API returns it (``requests`` only for the single view)."""
    body: dict[str, Any] = {
        "servicePrincipalId": app.service_principal_id,
        "health": app.health.value,
        "jobs": [job.public() for job in app.jobs],
    }
    if requests is not None:
        body["requests"] = [
            {"id": r.id, "state": r.state.value, "createdAt": r.created_at.isoformat()}
            for r in requests
        ]
    return body


async def visible_application(request: web.Request, caller: str) -> Application:
    """The application the path names, when ``caller`` may see it; else a 404 (an unknown
    principal and one hidden from the caller answer alike)."""
    try:
        sp = ApplicationPath.model_validate(request.match_info).service_principal_id
    except ValidationError:
        raise not_found() from None
    app = await ApplicationStore.of(request.app[STORE]).get(sp)
    if app is None or not visible_to(request.app[POLICY], caller)(app):
        raise not_found()
    return app


@routes.get(BASE + "/{servicePrincipalId}")
@operation(
    "getApplication",
    "One application: its watched jobs' health and the caller's requests",
    ok={200: Body("Application")},
    problems=(401, 403, 404, 503),
    path=ApplicationPath,
    description=(
        "404 for an unknown principal and for one the caller may not see (another "
        "caller's, unless the caller's policy names the principal). The health watch checks "
        "each job this service started or adopted within 60 s of the request's end, then 5, "
        "15 and 60 minutes apart, then every 6 hours (`PROVISIONER_WATCH_SCHEDULE`, jittered; "
        "a change of health starts it over); `checkedAt` and `nextCheckAt` say when. One Graph "
        "GET per check (and the pages of a newly finished cycle's provisioning logs), at most "
        "`PROVISIONER_WATCH_MAX_CALLS_PER_S` (1) for all jobs: 10,000 jobs every 6 hours are "
        "0.46 calls/s. A change of health is sent as the signed callback "
        "`application.health_changed` to the last request's `callbackUrl` and, for a request "
        "from a ticketing webhook, noted on its ticket."
    ),
)
async def get_application(request: web.Request) -> web.Response:
    """One application, with the caller's requests for it, newest first."""
    require(request, Permission.READ)
    caller = request[CALLER]
    app = await visible_application(request, caller)
    store = request.app[STORE]
    records = [await store.get(rid) for rid in app.request_ids]
    mine = [r for r in records if r is not None and r.caller == caller]
    return json_response(view(app, mine[:MAX_REQUESTS_SHOWN]))


@routes.get(BASE)
@operation(
    "listApplications",
    "A page of the applications the caller may see, by principal id",
    ok={200: Body("ApplicationPage")},
    problems=(401, 403, 422, 503),
    query=ApplicationListParams,
    description=(
        "Applications whose job this service started or adopted, as the health "
        "watch last read them; `health` keeps those with a job in that health."
    ),
)
async def list_applications(request: web.Request) -> web.Response:
    """A page of the applications the caller may see, by principal id, optionally only those
    with a job in one health."""
    require(request, Permission.READ)
    params = parse_application_params(request.query)
    apps, next_cursor = await ApplicationStore.of(request.app[STORE]).list(
        health=params.health,
        visible=visible_to(request.app[POLICY], request[CALLER]),
        cursor=params.cursor,
        limit=params.limit,
    )
    return page_response([view(a) for a in apps], next_cursor)


# OpenAPI -------------------------------------------------------------------------------------
_REF = "#/components/schemas/{model}"


def openapi_schemas() -> dict[str, Any]:
    """The schemas of the two operations (WatchedJob and its parts, from the models)."""
    _, top = models_json_schema([(WatchedJob, "serialization")], by_alias=True, ref_template=_REF)
    schemas: dict[str, Any] = copy.deepcopy(top["$defs"])
    job = schemas["WatchedJob"]
    hidden = {to_camel(name) for name in JOB_INTERNAL}
    job["properties"] = {k: v for k, v in job["properties"].items() if k not in hidden}
    job["required"] = list(job["properties"])
    job["description"] = "A watched job: its last reading, health and the watch's schedule."
    app_props: dict[str, Any] = {
        "servicePrincipalId": {"type": "string", "format": "uuid"},
        "health": {"$ref": _REF.format(model="Health"), "description": "Its worst job's."},
        "jobs": {"type": "array", "items": {"$ref": _REF.format(model="WatchedJob")}},
    }
    requests = {
        "type": "array",
        "description": "The caller's requests for it, newest first (at most 20).",
        "items": {
            "type": "object",
            "required": ["id", "state", "createdAt"],
            "properties": {
                "id": {"type": "string"},
                "state": {"$ref": _REF.format(model="State")},
                "createdAt": {"type": "string", "format": "date-time"},
            },
        },
    }
    schemas["Application"] = {
        "type": "object",
        "description": "A service principal's watched jobs (GET /v1/applications/{id}).",
        "required": [*app_props, "requests"],
        "properties": {**app_props, "requests": requests},
    }
    schemas["ApplicationSummary"] = {
        "type": "object",
        "description": "An application in a list (without its requests).",
        "required": list(app_props),
        "properties": app_props,
    }
    schemas["ApplicationPage"] = {
        "type": "object",
        "required": ["items", "nextCursor"],
        "properties": {
            "items": {"type": "array", "items": {"$ref": _REF.format(model="ApplicationSummary")}},
            "nextCursor": {
                "anyOf": [{"type": "string"}, {"type": "null"}],
                "description": "Pass as `cursor` for the next page; null on the last page.",
            },
        },
    }
    return schemas
