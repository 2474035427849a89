"""The status page's applications view: what the health watch knows, beside the requests.

``GET /ui/applications`` lists the applications the signed-in caller may see (the API's own
rule, :func:`service.api.applications.visible_to`), by service principal id, optionally only
those with a job in one health, cursor-paged like ``GET /v1/applications``.
``GET /ui/applications/{servicePrincipalId}`` shows one: each watched job's last reading (health
and reason, schedule state, status code, quarantine, last execution, the last cycle's per-user
outcomes), the watch's schedule, the job's health history, and the requests for it the caller
may see. An unknown principal, a malformed id and another caller's application are the same
404 page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from aiohttp import web

from service.api.access import can_see
from service.api.applications import visible_application, visible_to
from service.api.params import parse_application_params
from service.api.problems import Problem
from service.api.state import POLICY, STORE
from service.api.ui.pages import notices, reader, signed_in
from service.api.ui.render import page
from service.api.ui.session import UI_PREFIX
from service.core.application_store import ApplicationStore
from service.core.applications import Application, WatchedJob
from service.core.health import Health
from service.core.models import Record

__all__ = ["PAGE_SIZE", "AppRow", "routes"]

PAGE_SIZE = 50
TAB = "Applications"
BASE = UI_PREFIX + "/applications"

routes = web.RouteTableDef()


@dataclass(frozen=True, slots=True)
class AppRow:
    """One line of the list: the application's worst health with its job's reason, and the
    watch's times over its jobs (the latest check, the earliest next one)."""

    service_principal_id: str
    health: Health
    reason: str
    templates: list[str]
    jobs: int
    checked_at: datetime | None
    next_check_at: datetime | None

    @classmethod
    def of(cls, app: Application) -> AppRow:
        health = app.health
        worst = next((j for j in app.jobs if j.health is health), None)
        checked = [j.checked_at for j in app.jobs if j.checked_at is not None]
        due = [j.next_check_at for j in app.jobs if j.watching and j.next_check_at is not None]
        return cls(
            service_principal_id=app.service_principal_id,
            health=health,
            reason=worst.reason if worst else "no job watched",
            templates=sorted({j.template_id for j in app.jobs if j.template_id}),
            jobs=len(app.jobs),
            checked_at=max(checked, default=None),
            next_check_at=min(due, default=None),
        )


def _form(request: web.Request) -> dict[str, str]:
    """The query without a form's blank fields (``health=`` means any)."""
    return {k: v.strip() for k, v in request.query.items() if v.strip()}


@routes.get(BASE)
async def applications_page(request: web.Request) -> web.Response:
    """A page of the applications the caller may see, by principal id."""
    caller = reader(request)
    problems: list[str] = []
    rows: list[AppRow] = []
    health: Health | None = None
    cursor: str | None = None
    keep: dict[str, str] = {}
    next_cursor: str | None = None
    try:
        params = parse_application_params(_form(request))
    except Problem as problem:
        problems = notices(problem)
    else:
        health, cursor = params.health, params.cursor
        limit = params.limit if "limit" in params.model_fields_set else PAGE_SIZE
        apps, next_cursor = await ApplicationStore.of(request.app[STORE]).list(
            health=health,
            visible=visible_to(request.app[POLICY], caller),
            cursor=cursor,
            limit=limit,
        )
        rows = [AppRow.of(a) for a in apps]
        keep = {"health": health.value} if health else {}
        if limit != PAGE_SIZE:
            keep["limit"] = str(limit)
    context = await signed_in(
        request,
        caller,
        "Applications",
        TAB,
        healths=list(Health),
        health=health,
        raw_health=request.query.get("health", "").strip(),
        problems=problems,
        rows=rows,
        first=keep if cursor else None,
        following={**keep, "cursor": next_cursor} if next_cursor else None,
    )
    return page(request, "applications.html", context, status=400 if problems else 200)


@routes.get(BASE + "/{servicePrincipalId}")
async def application_page(request: web.Request) -> web.Response:
    """One application: its watched jobs, their health history and its requests."""
    caller = reader(request)
    app = await visible_application(request, caller)
    sp = app.service_principal_id
    store = request.app[STORE]
    records = [await store.get(rid) for rid in app.request_ids]
    requests: list[Record] = [r for r in records if r is not None and can_see(request, r)]
    jobs: list[WatchedJob] = sorted(app.jobs, key=lambda j: list(Health).index(j.health))
    context = await signed_in(
        request,
        caller,
        f"Application {sp}",
        TAB,
        app=app,
        row=AppRow.of(app),
        jobs=jobs,
        requests=requests,
    )
    return page(request, "application.html", context)
