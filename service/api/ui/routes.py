"""The read-only status page at ``/ui``: server-rendered HTML, no build step (docs/ui.md).

Pages: the caller's requests (``GET /ui``, newest first, filtered by state and service
principal, cursor-paged), one request's timeline (``GET /ui/requests/{id}``) and the live queue
counters (``GET /ui/counters``, JSON, polled by ``static/ui.js``). The handlers gather the values;
the templates (``templates/*.html``, autoescaped) lay them out. Authentication is the API's own
chain plus the session cookie (:mod:`service.api.ui.session`); errors are shown by
:mod:`service.api.ui.errors`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from aiohttp import web

from service.api.auth.keys import CALLER
from service.api.metrics import queue_counters
from service.api.problems import Problem
from service.api.state import STORE
from service.api.ui import session, static
from service.api.ui.render import page, setup_templates
from service.api.ui.session import UI_PREFIX, can_read
from service.core.models import Record, State
from service.core.store import guarded

__all__ = ["PAGE_SIZE", "routes", "setup_ui"]

PAGE_SIZE = 50
COUNTERS_REFRESH_S = 5
DETAIL_REFRESH_S = 5

routes = web.RouteTableDef()


def _reader(request: web.Request) -> str:
    """The caller, when it may read; else a 403 (rendered as a page by the middleware)."""
    caller = request[CALLER]
    if not can_read(request, caller):
        raise Problem(403, "Forbidden", "This caller lacks the 'read' permission.")
    return caller


async def _counters(request: web.Request) -> dict[str, Any]:
    store = request.app[STORE]
    counters = await guarded(lambda: queue_counters(store))
    return {
        "queueDepth": counters.queue_depth,
        "inFlight": counters.running,
        "callbacksPending": counters.callbacks_pending,
        "throttleCooldowns": counters.throttle_cooldowns,
        "workersAlive": counters.workers_alive,
        "cooldowns": [
            {"tenant": tenant, "remainingS": round(seconds, 1)}
            for tenant, seconds in counters.cooldowns
        ],
    }


async def _signed_in(
    request: web.Request, caller: str, title: str, **context: Any
) -> dict[str, Any]:
    """The context every signed-in page gets: caller, counters, the active tab."""
    return {
        "title": title,
        "caller": caller,
        "tab": "Requests",
        "counters": await _counters(request),
        "counters_refresh_s": COUNTERS_REFRESH_S,
        **context,
    }


@dataclass
class ListFilters:
    """The list page's query: the raw values (echoed back) and what they parse to."""

    raw_state: str
    raw_principal: str
    cursor: str | None
    state: State | None = None
    principal: str | None = None
    problems: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, request: web.Request) -> ListFilters:
        query = request.query
        found = cls(
            raw_state=query.get("state", "").strip(),
            raw_principal=query.get("servicePrincipalId", "").strip(),
            cursor=query.get("cursor", "").strip() or None,
        )
        if found.raw_state:
            try:
                found.state = State(found.raw_state)
            except ValueError:
                found.problems.append(
                    "State must be one of " + ", ".join(s.value for s in State) + "."
                )
        if found.raw_principal:
            try:
                found.principal = str(UUID(found.raw_principal))
            except ValueError:
                found.problems.append("The service principal id must be a GUID.")
        return found

    def query(self, **more: str | None) -> dict[str, str]:
        """The query string of a link to another page of the same list."""
        values = {"state": self.raw_state, "servicePrincipalId": self.principal, **more}
        return {k: v for k, v in values.items() if v}


@routes.get(UI_PREFIX)
async def list_page(request: web.Request) -> web.Response:
    """The caller's requests, newest first."""
    caller = _reader(request)
    filters = ListFilters.parse(request)
    records: list[Record] = []
    next_cursor: str | None = None
    if not filters.problems:
        try:
            records, next_cursor = await request.app[STORE].list(
                state=filters.state,
                service_principal_id=filters.principal,
                caller=caller,
                cursor=filters.cursor,
                limit=PAGE_SIZE,
            )
        except ValueError:
            filters.problems.append("That page cursor is not one this page made; start again.")
    context = await _signed_in(
        request,
        caller,
        "Requests",
        filters=filters,
        states=list(State),
        records=records,
        newest=filters.query() if filters.cursor else None,
        older=filters.query(cursor=next_cursor) if next_cursor else None,
    )
    return page(request, "list.html", context, status=400 if filters.problems else 200)


@routes.get(UI_PREFIX + "/requests/{id}")
async def request_page(request: web.Request) -> web.Response:
    """One request: summary, error, step timeline and callbacks."""
    caller = _reader(request)
    # Any id is only looked up under the records' own key prefix; unknown and another caller's
    # ids are the same 404.
    record = await request.app[STORE].get(request.match_info["id"])
    if record is None or record.caller != caller:
        raise Problem(404, "Not Found", "No provisioning request with this id.")
    context = await _signed_in(
        request,
        caller,
        f"Request {record.id}",
        record=record,
        refresh_s=None if record.state.terminal else DETAIL_REFRESH_S,
    )
    return page(request, "request.html", context)


@routes.get(UI_PREFIX + "/counters")
async def counters(request: web.Request) -> web.Response:
    """The live queue counters, as JSON (the pages poll this)."""
    _reader(request)
    return web.json_response(await _counters(request), headers={"Cache-Control": "no-store"})


def setup_ui(app: web.Application) -> None:
    """Wire the status page into the API app: the templates and the page, sign-in and static
    routes (:func:`service.api.app.create_app` also puts the session authenticator in the chain
    and :func:`service.api.ui.errors.ui_middleware` among the middlewares)."""
    setup_templates(app)
    app.add_routes(routes)
    app.add_routes(session.routes)
    app.add_routes(static.routes)
