"""The read-only status page at ``/ui``: server-rendered HTML, no build step (docs/ui.md).

Pages: the caller's requests (``GET /ui``, newest first, filtered by state, service principal
and, for an operator, caller; cursor-paged), one request's timeline (``GET /ui/requests/{id}``)
and the live counters (``GET /ui/counters``, JSON, polled by ``static/ui.js``); the applications
view is :mod:`service.api.ui.applications`. The query is parsed by the API's own
:func:`~service.api.params.parse_list_params` and access is decided by
:mod:`service.api.access`, so a page shows what ``GET /v1/provisioning-requests`` answers the
same caller: its own requests, or with ``operator`` every caller's. The handlers gather the
values; the templates (``templates/*.html``, autoescaped) lay them out. Authentication is the
API's own chain plus the session cookie (:mod:`service.api.ui.session`); errors are shown by
:mod:`service.api.ui.errors`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from service.api.access import list_caller, visible_record
from service.api.applications import visible_to
from service.api.auth.policy import Permission
from service.api.params import ListParams, parse_list_params
from service.api.problems import Problem
from service.api.state import POLICY, STORE
from service.api.ui import applications, session, static
from service.api.ui.pages import counters as live_counters
from service.api.ui.pages import notices, reader, signed_in
from service.api.ui.render import page, setup_templates
from service.api.ui.session import UI_PREFIX
from service.core.application_store import ApplicationStore
from service.core.models import Record, State

__all__ = ["PAGE_SIZE", "routes", "setup_ui"]

PAGE_SIZE = 50
DETAIL_REFRESH_S = 5
TAB = "Requests"
#: The list form's fields (the API's query names); anything else is refused like the API does.
FIELDS = ("state", "servicePrincipalId", "caller")

routes = web.RouteTableDef()


@dataclass
class ListFilters:
    """The list page's query: the raw values (echoed back into the form) and what they parse
    to, or the notices saying why not."""

    raw: dict[str, str]
    params: ListParams | None = None
    problems: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, request: web.Request) -> ListFilters:
        found = cls(raw={k: request.query.get(k, "").strip() for k in FIELDS})
        try:
            found.params = parse_list_params(request.query, drop_empty=True)
        except Problem as problem:
            found.problems += notices(problem)
        return found

    @property
    def state(self) -> State | None:
        return self.params.state if self.params else None

    @property
    def limit(self) -> int:
        """The page size: ``limit`` when the query names one (the API's limits), else 50."""
        params = self.params
        return params.limit if params and "limit" in params.model_fields_set else PAGE_SIZE

    def query(self, **more: str | None) -> dict[str, str]:
        """The query string of a link to another page of the same list."""
        params = self.params
        values = {
            "state": params.state.value if params and params.state else None,
            "servicePrincipalId": params.service_principal_id if params else None,
            "caller": params.caller if params else None,
            "limit": str(params.limit) if params and "limit" in params.model_fields_set else None,
            **more,
        }
        return {k: v for k, v in values.items() if v}


@routes.get(UI_PREFIX)
async def list_page(request: web.Request) -> web.Response:
    """The caller's requests (an operator's: every caller's, or one caller's), newest first."""
    caller = reader(request)
    filters = ListFilters.parse(request)
    records: list[Record] = []
    next_cursor: str | None = None
    status = 200
    if filters.params is not None:
        try:
            owner = list_caller(request, filters.params)
            records, next_cursor = await request.app[STORE].list(
                state=filters.params.state,
                service_principal_id=filters.params.service_principal_id,
                caller=owner,
                cursor=filters.params.cursor,
                limit=filters.limit,
            )
        except Problem as problem:  # a caller filter without the operator permission
            filters.problems += notices(problem)
            status = problem.status
        except ValueError:
            filters.problems.append("That page cursor is not one this page made; start again.")
    context = await signed_in(
        request,
        caller,
        "Requests",
        TAB,
        filters=filters,
        states=list(State),
        records=records,
        newest=filters.query() if filters.params and filters.params.cursor else None,
        older=filters.query(cursor=next_cursor) if next_cursor else None,
    )
    if filters.problems and status == 200:
        status = 400
    return page(request, "list.html", context, status=status)


@routes.get(UI_PREFIX + "/requests/{id}")
async def request_page(request: web.Request) -> web.Response:
    """One request: summary, error, step timeline and callbacks."""
    caller = reader(request)
    # Unknown, malformed and (for a non-operator) another caller's ids are the same 404.
    record = await visible_record(request, request.match_info["id"], Permission.READ)
    application = await ApplicationStore.of(request.app[STORE]).get(record.service_principal_id)
    if application is not None and not visible_to(request.app[POLICY], caller)(application):
        application = None
    context = await signed_in(
        request,
        caller,
        f"Request {record.id}",
        TAB,
        record=record,
        application=application,
        refresh_s=None if record.state.terminal else DETAIL_REFRESH_S,
    )
    return page(request, "request.html", context)


@routes.get(UI_PREFIX + "/counters")
async def counters(request: web.Request) -> web.Response:
    """The live counters, as JSON (the pages poll this)."""
    reader(request)
    return web.json_response(await live_counters(request), headers={"Cache-Control": "no-store"})


def setup_ui(app: web.Application) -> None:
    """Wire the status page into the API app: the templates and the page, sign-in and static
    routes (:func:`service.api.app.create_app` also puts the session authenticator in the chain
    and :func:`service.api.ui.errors.ui_middleware` among the middlewares)."""
    setup_templates(app)
    app.add_routes(routes)
    app.add_routes(applications.routes)
    app.add_routes(session.routes)
    app.add_routes(static.routes)
