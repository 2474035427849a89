"""The test-only control plane under /_sandbox/ (no auth: bind the sandbox to localhost)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from sandbox.context import CTX_KEY
from sandbox.faults import FaultProfile
from sandbox.lifecycle import LIFECYCLE_KEY
from sandbox.seed import SeedPrincipal


def _invalid(exc: ValidationError | ValueError) -> web.Response:
    detail: Any = (
        json.loads(exc.json(include_url=False)) if isinstance(exc, ValidationError) else str(exc)
    )
    return web.json_response({"error": "invalid", "detail": detail}, status=400)


async def _json_body(request: web.Request) -> Any:
    try:
        return await request.json()
    except json.JSONDecodeError as exc:
        raise web.HTTPBadRequest(text=f"invalid JSON: {exc}") from exc


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[CTX_KEY].state.stats_json())


async def reset(request: web.Request) -> web.Response:
    request.app[CTX_KEY].reset()
    request.app[LIFECYCLE_KEY].reset()  # failSubjects and the provisionOnDemand window too
    return web.json_response({"status": "reset"})


async def get_faults(request: web.Request) -> web.Response:
    return web.json_response(request.app[CTX_KEY].engine.profile.model_dump(mode="json"))


async def put_faults(request: web.Request) -> web.Response:
    engine = request.app[CTX_KEY].engine
    try:
        engine.profile = FaultProfile.model_validate(await _json_body(request))
    except ValidationError as exc:
        return _invalid(exc)
    return web.json_response(engine.profile.model_dump(mode="json"))


async def patch_faults(request: web.Request) -> web.Response:
    engine = request.app[CTX_KEY].engine
    patch = await _json_body(request)
    if not isinstance(patch, dict):
        return _invalid(ValueError("the patch must be a JSON object"))
    try:
        engine.profile = engine.profile.merged(patch)
    except (ValidationError, ValueError) as exc:
        return _invalid(exc)
    return web.json_response(engine.profile.model_dump(mode="json"))


async def list_principals(request: web.Request) -> web.Response:
    state = request.app[CTX_KEY].state
    return web.json_response({"tenantId": state.tenant_id, "value": state.principals_json()})


async def add_principal(request: web.Request) -> web.Response:
    """Add (or replace) a principal at run time, e.g. a "new" one with ``newForMs``."""
    state = request.app[CTX_KEY].state
    try:
        principal = SeedPrincipal.model_validate(await _json_body(request))
    except (ValidationError, ValueError) as exc:
        return _invalid(exc)
    state.add_principal(principal)
    return web.json_response({"id": principal.id.lower()}, status=201)


ROUTES: tuple[tuple[str, str, Any], ...] = (
    ("GET", "/_sandbox/health", health),
    ("GET", "/_sandbox/stats", stats),
    ("POST", "/_sandbox/reset", reset),
    ("GET", "/_sandbox/faults", get_faults),
    ("PUT", "/_sandbox/faults", put_faults),
    ("PATCH", "/_sandbox/faults", patch_faults),
    ("GET", "/_sandbox/principals", list_principals),
    ("POST", "/_sandbox/principals", add_principal),
)
