"""The provisioning logs route, ``GET /auditLogs/provisioning``, and its test control.

The list answers one page of the entries :class:`sandbox.provisioning_logs.ProvisioningLogs`
admits for ``$filter``: ``$top`` entries, at most the fault profile's ``page_size`` (0: no
cap), with an opaque signed ``@odata.nextLink`` like every sandbox collection. Authentication,
the ``AuditLog.Read.All`` check (403 ``Authorization_RequestDenied``) and the injected faults
are the middleware's (app.py). Control: ``PUT /_sandbox/provisioning-logs`` sets per-object
outcomes, ``GET`` returns them with the number of entries logged.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from sandbox.context import CTX_KEY
from sandbox.graph import page_of
from sandbox.models import bad_request
from sandbox.provisioning_logs import ProvisioningLogs

MAX_TOP = 1000


def _logs(request: web.Request) -> ProvisioningLogs:
    return request.app[CTX_KEY].state.logs


def _size(request: web.Request, page_size: int) -> int:
    """Entries a page: ``$top``, but never more than the fault profile's ``page_size`` (Graph
    may answer fewer than asked; 0 = no cap)."""
    raw = request.query.get("$top")
    if raw is None:
        return page_size
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_TOP:
        raise bad_request(f"Invalid value for $top: '{raw}'.")
    return min(int(raw), page_size) if page_size > 0 else int(raw)


async def list_provisioning(request: web.Request) -> web.Response:
    ctx = request.app[CTX_KEY]
    items = _logs(request).select(request.query.get("$filter"))
    size = _size(request, ctx.engine.profile.page_size)
    version = request.path.split("/")[1]
    context = f"https://{request.host}/{version}/$metadata#auditLogs/provisioning"
    return page_of(request, items, context, size)


async def put_outcomes(request: web.Request) -> web.Response:
    try:
        return web.json_response(_logs(request).control(await request.json()))
    except ValueError as e:
        return web.json_response({"error": str(e)}, status=400)


async def get_outcomes(request: web.Request) -> web.Response:
    return web.json_response(_logs(request).json())


CONTROL_ROUTES: tuple[tuple[str, str, Any], ...] = (
    ("PUT", "/_sandbox/provisioning-logs", put_outcomes),
    ("GET", "/_sandbox/provisioning-logs", get_outcomes),
)
