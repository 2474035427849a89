"""The API's outermost middleware: a request id and one log line for every request, its
metrics, and errors turned into answers, in one frame instead of three.

The id is the caller's ``X-Request-Id`` when it is short and plain, else a fresh one; it is
bound into every log line written while the request runs and echoed on the answer. The error
mapping (:func:`service.api.problems.problem_answer`) and the metrics
(:meth:`service.api.metrics.ApiMetrics.observe_request`) are passed in, so this module imports
neither.

Requests the HTTP parser refuses never reach a middleware: :mod:`service.api.server` answers
and logs them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id", str)
REQUEST_ID_HEADER = "X-Request-Id"
#: The authenticated caller's name, set by :mod:`service.api.auth.keys`, written on the line.
CALLER: web.RequestKey[str] = web.RequestKey("caller", str)

#: The answer to an error a handler raised (HTTP exceptions below 400 pass through).
ErrorAnswer = Callable[[web.Request, Exception], web.StreamResponse]
#: Counts an answered request: method, route template ("unmatched"), status, seconds.
Observe = Callable[[str, str, int, float], None]

_SAFE_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-")
_REQUEST_ID_MAX = 128


class _LineLogger:
    """The request line's logger, assembled again only when structlog is configured anew.

    ``structlog.get_logger``'s lazy proxy assembles a bound logger (and a ``PrintLogger``) on
    every call, ~20 us a line even when the level filters it out; the configuration's parts
    are compared by identity, so ``configure`` (a test's, a reload's) is seen at the next line.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._parts: tuple[Any, ...] = ()
        self._logger: Any = None

    def get(self) -> Any:
        config = structlog.get_config()
        parts = (
            config["processors"],
            config["wrapper_class"],
            config["logger_factory"],
            config["context_class"],
        )
        if len(parts) != len(self._parts) or any(
            a is not b for a, b in zip(parts, self._parts, strict=True)
        ):
            self._logger = structlog.get_logger(self._name).bind()
            self._parts = parts
        return self._logger


_line = _LineLogger(__name__)


def request_id_from(header: str | None) -> str:
    """The caller's ``X-Request-Id`` when it is short and plain, else a fresh one."""
    if header and len(header) <= _REQUEST_ID_MAX and _SAFE_ID_CHARS.issuperset(header):
        return header
    return os.urandom(16).hex()  # uuid4().hex's 32 hex digits, without building a UUID


def route_template(request: web.Request) -> str | None:
    """The matched route's template (``/v1/provisioning-requests/{id}``), None when unmatched."""
    resource = request.match_info.route.resource
    return None if resource is None else resource.canonical


def request_middleware(
    errors: ErrorAnswer | None = None, observe: Observe | None = None
) -> Middleware:
    """Assign the request id, bind it for the request, answer errors with ``errors``, count the
    request with ``observe`` and write one ``http_request`` line."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
        request[REQUEST_ID] = request_id
        started = time.perf_counter()
        status = 500
        # bind + reset (not bound_contextvars, which copies the whole context twice)
        tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            try:
                response = await handler(request)
            except web.HTTPException as e:
                status = e.status
                if errors is None or e.status < 400:
                    raise
                response = errors(request, e)
            except Exception as e:
                if errors is None:
                    raise
                response = errors(request, e)
            status = response.status
            response.headers[REQUEST_ID_HEADER] = request_id
            return response
        finally:
            seconds = time.perf_counter() - started
            route = route_template(request)
            if observe is not None:
                observe(request.method, route or "unmatched", status, seconds)
            _line.get().info(
                "http_request",
                method=request.method,
                path=route or request.path[:200],
                status=status,
                duration_ms=round(seconds * 1000, 2),
                caller=request.get(CALLER),
            )
            structlog.contextvars.reset_contextvars(**tokens)

    return middleware
