"""Rendering the status page: the Jinja2 environment (autoescape on, via aiohttp-jinja2), the
page response with its per-response CSP nonce, the hardening headers, redirects, error pages.

Every value a template prints is escaped by Jinja2's autoescape and then, by the environment's
``finalize``, freed of control and bidirectional-override characters (shown as ``\\u202e``-style
escapes), so a record holding NUL, ESC or U+202E renders as visible text, never as garbage or
reordered text. The templates are in ``templates/``, the style sheet and script in ``static/``
(:mod:`service.api.ui.static`); the only script is loaded from ``'self'`` with the nonce.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from markupsafe import Markup

from service.api.problems import Problem
from service.api.ui.static import static_url

__all__ = ["harden", "page", "redirect", "render_problem", "setup_templates"]

#: The navigation tabs of the base layout: (label, path). A new list page adds one entry.
NAV_TABS: tuple[tuple[str, str], ...] = (("Requests", "/ui"), ("Applications", "/ui/applications"))

# C0 and C1 controls except tab and newline, DEL, and the bidirectional embedding, override and
# isolate characters (U+202A-U+202E, U+2066-U+2069), plus the zero-width and BOM characters.
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def visible(text: str) -> str:
    """``text`` with each invisible or reordering character written as an escape."""
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _finalize(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, str) and not isinstance(value, Markup):
        return visible(value)
    return value


def dash(value: object) -> str:
    """A dash for a missing value (None or empty)."""
    return "\u2013" if value is None or value == "" else str(value)


def when(value: datetime | None, time_only: bool = False) -> str:
    """``2024-05-01 12:00:00`` (or ``12:00:00.123``), UTC as stored."""
    if value is None:
        return "\u2013"
    return value.strftime("%H:%M:%S.%f")[:-3] if time_only else value.strftime("%Y-%m-%d %H:%M:%S")


def duration(ms: int | None) -> str:
    """``87 ms`` or ``1.23 s``."""
    if ms is None:
        return "\u2013"
    return f"{ms} ms" if ms < 1000 else f"{ms / 1000:.2f} s"


def json_text(value: object) -> str:
    """``value`` as sorted JSON text (escaped like any other text when printed)."""
    return json.dumps(value, sort_keys=True)


def setup_templates(app: web.Application) -> None:
    """Install the Jinja2 environment on the app (templates from the package)."""
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("service.api.ui", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        default_helpers=False,
    )
    env.filters.update(dash=dash, when=when, duration=duration, json=json_text)
    env.globals["static_url"] = static_url
    env.globals["nav_tabs"] = NAV_TABS


def harden(response: web.StreamResponse) -> web.StreamResponse:
    """The headers every ``/ui`` answer carries (a static file keeps its own Cache-Control)."""
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    return response


def _csp(nonce: str) -> str:
    return (
        f"default-src 'none'; style-src 'self'; script-src 'nonce-{nonce}'; "
        "connect-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; "
        "frame-ancestors 'none'"
    )


def page(
    request: web.Request,
    template: str,
    context: Mapping[str, Any],
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """A whole HTML page from ``template``, with a fresh CSP nonce for its script tag.

    ``context`` needs a ``title``; ``caller`` (signed in: the header shows it and the counters
    script is loaded), ``tab`` (the active nav tab's label) and ``refresh_s`` are optional."""
    nonce = secrets.token_urlsafe(16)
    values = {"caller": None, "tab": None, "refresh_s": None, **context, "nonce": nonce}
    response = aiohttp_jinja2.render_template(template, request, values, status=status)
    response.headers.update(headers or {})
    response.headers["Content-Security-Policy"] = _csp(nonce)
    return response


def redirect(location: str) -> web.Response:
    """A 303 See Other (the answer to a POST, and to an unauthenticated page request)."""
    return web.Response(status=303, headers={"Location": location})


def render_problem(request: web.Request, problem: Problem) -> web.Response:
    """A problem (:func:`service.api.problems.problem_for`) as the status page's error page."""
    context = {"title": problem.title, "problem": problem}
    return page(request, "error.html", context, status=problem.status, headers=problem.headers)
