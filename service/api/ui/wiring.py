"""Wiring the status page into the API app: the template engine and the page, session and static
routes. :func:`service.api.app.create_app` calls :func:`setup_ui`; it also puts
:class:`service.api.ui.session.SessionAuthenticator` in the authenticator chain and
:func:`service.api.ui.errors.ui_middleware` among the middlewares."""

from __future__ import annotations

from aiohttp import web

from service.api.ui import routes, session, static
from service.api.ui.render import setup_templates

__all__ = ["setup_ui"]


def setup_ui(app: web.Application) -> None:
    """Install the templates and add the ``/ui`` routes."""
    setup_templates(app)
    app.add_routes(routes.routes)
    app.add_routes(session.routes)
    app.add_routes(static.routes)
