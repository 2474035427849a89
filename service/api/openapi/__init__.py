"""The API's OpenAPI 3.1 document: built from the routes' metadata and the pydantic models.

``GET /openapi.json`` serves it; ``docs/api.md`` is rendered from it (a test keeps the two in
sync). Regenerate the docs with::

    python -m service.api.openapi markdown > docs/api.md

Each handler in :mod:`service.api.routes` carries its operation (:mod:`.meta`); parameters are
rendered from the models the handlers parse with (:mod:`service.api.params`), so a limit or a
pattern is written once.
"""

from __future__ import annotations

import json
import sys
from functools import cache
from typing import Any

from service.api.openapi.markdown import render_markdown

__all__ = ["build_openapi", "main", "render_markdown"]


@cache
def _build() -> str:
    # Imported here: the route modules import this package for their metadata.
    from service.api.applications import routes as application_routes
    from service.api.openapi.document import paths, schemas
    from service.api.openapi.webhook import WEBHOOK_OPERATION
    from service.api.routes import routes
    from service.api.webhooks.handler import WEBHOOK_PATH
    from service.api.webhooks.handler import routes as webhook_routes

    doc = {
        "openapi": "3.1.0",
        "info": {
            "title": "Entra provisioning orchestrator",
            "version": "1",
            "description": (
                "Turns on Microsoft Entra ID automatic user provisioning for enterprise apps. "
                "Errors are application/problem+json (RFC 9457); "
                "credential values are never echoed."
            ),
        },
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "security": [{"bearerAuth": []}],
        "paths": paths(
            [routes, application_routes, webhook_routes],
            {("POST", WEBHOOK_PATH): WEBHOOK_OPERATION},
        ),
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key, or an Entra ID access token for this API.",
                }
            },
        },
    }
    return json.dumps(doc)


def build_openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document (a fresh copy; safe to mutate)."""
    doc: dict[str, Any] = json.loads(_build())
    return doc


def main(argv: list[str] | None = None) -> int:
    """``python -m service.api.openapi [json|markdown]``: print the document or its markdown."""
    args = sys.argv[1:] if argv is None else argv
    doc = build_openapi()
    if args[:1] == ["markdown"]:
        sys.stdout.write(render_markdown(doc))
    else:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    return 0
