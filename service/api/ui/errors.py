"""The status page's middleware: HTML error pages and hardening headers on ``/ui`` paths.

It sits between the problem and the auth middlewares. Errors are mapped to status, title and
detail by :func:`service.api.problems.problem_for`, the API's one mapping; this module only
chooses how to show the result: an unauthenticated page request is a 303 to ``/ui/login``,
``/ui/counters`` (JSON for the page's script) answers problem+json, every other error is the
error page (``templates/error.html``), never a stack trace. Static files are public and are
answered before authentication. Other paths pass through untouched.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from service.api.problems import Problem, problem_for
from service.api.ui.render import harden, redirect, render_problem
from service.api.ui.session import UI_PREFIX, is_ui
from service.api.ui.static import STATIC_PREFIX

__all__ = ["ui_middleware"]

COUNTERS_PATH = UI_PREFIX + "/counters"


def _show(request: web.Request, problem: Problem) -> web.Response:
    if request.path == COUNTERS_PATH:
        return problem.response()
    if problem.status == 401:
        return redirect(UI_PREFIX + "/login")
    return render_problem(request, problem)


@web.middleware
async def ui_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """On ``/ui`` paths: 303 to the key prompt when unauthenticated, HTML error pages, no
    traces; hardening headers on every answer. Other paths pass through untouched."""
    if not is_ui(request.path):
        return await handler(request)
    if request.path.startswith(STATIC_PREFIX):
        handler = request.match_info.handler  # public: past the authentication middleware
    try:
        return harden(await handler(request))
    except web.HTTPException as exc:
        if exc.status < 400:
            harden(exc)
            raise
        problem = problem_for(request, exc)
    except Exception as exc:
        problem = problem_for(request, exc)
    return harden(_show(request, problem))
