"""Structured logging for every process.

:func:`configure_logging` is shared by the API and the workers: JSON lines on stdout (pretty on a
terminal), the level from the settings, and context bound through :mod:`structlog.contextvars`
merged into every line, including lines from stdlib loggers (aiohttp, arq). Bind context with::

    structlog.contextvars.bind_contextvars(request_id=..., job_id=...)

Nothing here logs bodies, headers or keys; callers must not pass them either.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

from service.core.settings import Settings
from service.core.tracing import add_trace_ids


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
