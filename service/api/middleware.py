"""The API's outermost middleware: a request id for every request and one log line for it.

The id is the caller's ``X-Request-Id`` when it is short and plain, else a fresh one; it is
bound into every log line written while the request runs and echoed on the answer.

Requests the HTTP parser refuses never reach a middleware: :mod:`service.api.server` answers
and logs them.
"""

from __future__ import annotations

import re
import time
import uuid

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id", str)
REQUEST_ID_HEADER = "X-Request-Id"
#: The authenticated caller's name, set by :mod:`service.api.auth.keys`, written on the line.
CALLER: web.RequestKey[str] = web.RequestKey("caller", str)

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

log = structlog.get_logger(__name__)


def request_id_from(header: str | None) -> str:
    """The caller's ``X-Request-Id`` when it is short and plain, else a fresh one."""
    if header and _SAFE_REQUEST_ID.match(header):
        return header
    return uuid.uuid4().hex


def route_template(request: web.Request) -> str | None:
    """The matched route's template (``/v1/provisioning-requests/{id}``), None when unmatched."""
    resource = request.match_info.route.resource
    return None if resource is None else resource.canonical


@web.middleware
async def logging_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Assign the request id, bind it for the request and write one ``http_request`` line."""
    request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
    request[REQUEST_ID] = request_id
    started = time.perf_counter()
    status = 500
    with structlog.contextvars.bound_contextvars(request_id=request_id):
        try:
            response = await handler(request)
            status = response.status
            response.headers[REQUEST_ID_HEADER] = request_id
            return response
        except web.HTTPException as e:
            status = e.status
            raise
        finally:
            log.info(
                "http_request",
                method=request.method,
                path=route_template(request) or request.path[:200],
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
                caller=request.get(CALLER),
            )
