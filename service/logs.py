"""Structured logging for every process, and the API's one-line-per-request middleware.

:func:`configure_logging` is shared by the API and the workers: JSON lines on stdout (pretty on a
terminal), the level from the settings, and context bound through :mod:`structlog.contextvars`
merged into every line, including lines from stdlib loggers (aiohttp, arq). Bind context with::

    structlog.contextvars.bind_contextvars(request_id=..., job_id=...)

Nothing here logs bodies, headers or keys; callers must not pass them either.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from typing import Any, TextIO

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from service.config import Settings
from service.tracing import add_trace_ids

REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id", str)
REQUEST_ID_HEADER = "X-Request-Id"
#: The authenticated caller's name, set by :mod:`service.auth` and written on the request's line.
CALLER: web.RequestKey[str] = web.RequestKey("caller", str)

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

log = structlog.get_logger(__name__)


def _renderer(settings: Settings, stream: TextIO) -> Any:
    console = settings.log_format == "console" or (
        settings.log_format == "auto" and stream.isatty()
    )
    if console:
        return structlog.dev.ConsoleRenderer()
    return structlog.processors.JSONRenderer()


def configure_logging(settings: Settings, stream: TextIO | None = None) -> None:
    """Send structlog and stdlib logging to ``stream`` (stdout) as JSON lines or console text."""
    out = stream if stream is not None else sys.stdout
    level = logging.getLevelNamesMapping()[settings.log_level]
    renderer = _renderer(settings, out)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_ids,
    ]
    if isinstance(renderer, structlog.processors.JSONRenderer):
        shared.append(structlog.processors.dict_tracebacks)

    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )

    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # aiohttp's access log is replaced by the middleware below.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


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
