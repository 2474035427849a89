"""Graph synchronization handlers. Faults, auth and error bodies live in the middleware (app.py);
these only do what the real service does when nothing goes wrong."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any

from aiohttp import web

from sandbox.context import CTX_KEY, SandboxContext
from sandbox.models import CycleRules, GraphError, bad_request

ODATA_JSON = (
    "application/json;odata.metadata=minimal;odata.streaming=true;"
    "IEEE754Compatible=false;charset=utf-8"
)


def graph_json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(body).encode(), status=status, headers={"Content-Type": ODATA_JSON}
    )


def no_content() -> web.Response:
    return web.Response(status=204)


def _ctx(request: web.Request) -> SandboxContext:
    return request.app[CTX_KEY]


def _sp(request: web.Request) -> str:
    return request.match_info["sp"]


def _context_url(request: web.Request, suffix: str) -> str:
    version = request.path.split("/")[1]
    return (
        f"https://{request.host}/{version}/$metadata#servicePrincipals('{_sp(request)}')/{suffix}"
    )


async def _body(request: web.Request, *, required: bool) -> dict[str, Any]:
    text = await request.text()
    if not text.strip():
        if required:
            raise bad_request("A request body is required.")
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise bad_request(
            "Unable to read JSON request payload. Please ensure Content-Type header is set and "
            "payload is of valid JSON format."
        ) from exc
    if not isinstance(data, dict):
        raise bad_request("The request body must be a JSON object.")
    return data


def _pairs(data: dict[str, Any], field: str) -> list[tuple[str, str]]:
    items = data.get(field, [])
    if not isinstance(items, list) or not all(
        isinstance(i, dict) and isinstance(i.get("key"), str) and isinstance(i.get("value"), str)
        for i in items
    ):
        raise bad_request(f"'{field}' must be a list of {{key, value}} string pairs.")
    return [(i["key"], i["value"]) for i in items]


# -- paging ------------------------------------------------------------------------------------
def _sign(key: bytes, offset: int) -> str:
    raw = f"{offset}".encode()
    mac = hmac.new(key, raw, hashlib.sha256).digest()[:12]
    return base64.urlsafe_b64encode(raw + b"." + mac).decode().rstrip("=")


def _offset(key: bytes, token: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        value, _, mac = raw.partition(b".")
        if hmac.compare_digest(mac, hmac.new(key, value, hashlib.sha256).digest()[:12]):
            return int(value)
    except (binascii.Error, ValueError):
        pass
    raise bad_request("The $skiptoken is not valid.")


def paged(request: web.Request, items: list[dict[str, Any]], context: str) -> web.Response:
    """One page of a principal's ``items`` (``context`` under ``servicePrincipals('{id}')``)."""
    return page_of(request, items, _context_url(request, context))


def page_of(
    request: web.Request,
    items: list[dict[str, Any]],
    context_url: str,
    size: int | None = None,
) -> web.Response:
    """One page of ``items`` with an opaque ``@odata.nextLink`` signed by the sandbox;
    ``size`` entries (default: the fault profile's ``page_size``; 0 = all)."""
    ctx = _ctx(request)
    size = ctx.engine.profile.page_size if size is None else size
    token = request.query.get("$skiptoken")
    start = _offset(ctx.paging_key, token) if token else 0
    end = start + size if size > 0 else len(items)
    body: dict[str, Any] = {"@odata.context": context_url}
    if end < len(items):
        query = {k: v for k, v in request.query.items() if k != "$skiptoken"}
        query["$skiptoken"] = _sign(ctx.paging_key, end)
        body["@odata.nextLink"] = str(request.url.with_query(query))
    body["value"] = items[start:end]
    return graph_json(body)


# -- handlers ----------------------------------------------------------------------------------
async def list_templates(request: web.Request) -> web.Response:
    items = _ctx(request).state.templates(_sp(request))
    return paged(request, items, "synchronization/templates")


async def list_jobs(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    items = ctx.state.list_jobs(_sp(request), lag_s=ctx.engine.profile.job_list_lag_s)
    return paged(request, items, "synchronization/jobs")


async def create_job(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    ctx.state.principal(_sp(request))
    data = await _body(request, required=True)
    template_id = data.get("templateId")
    if not isinstance(template_id, str) or not template_id:
        raise bad_request("The 'templateId' property is required.")
    profile = ctx.engine.profile
    job = ctx.state.create_job(
        _sp(request), template_id, initial_status=profile.initial_status_code
    )
    body = {"@odata.context": _context_url(request, "synchronization/jobs/$entity")}
    return graph_json({**body, **job.to_json()}, status=profile.create_status)


async def get_job(request: web.Request) -> web.Response:
    job = _ctx(request).state.job(_sp(request), request.match_info["job"])
    body = {"@odata.context": _context_url(request, "synchronization/jobs/$entity")}
    return graph_json({**body, **job.to_json()})


async def delete_job(request: web.Request) -> web.Response:
    _ctx(request).state.delete_job(_sp(request), request.match_info["job"])
    return no_content()


def cycle_rules(ctx: SandboxContext, sp_id: str) -> CycleRules:
    """How a job of ``sp_id`` behaves once started: the profile's, the principal's over it."""
    p = ctx.engine.profile
    defaults = CycleRules(
        first_cycle_s=p.activation_delay_ms / 1000,
        cycle_s=p.cycle_s,
        fail_cycles=p.fail_cycles,
        quarantine_after_s=p.quarantine_after_s,
        quarantine_reason=p.quarantine_reason,
        quarantine_code=p.quarantine_status_code,
    )
    return ctx.state.rules_for(sp_id, defaults)


async def start_job(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    rules = cycle_rules(ctx, _sp(request))
    ctx.state.start_job(_sp(request), request.match_info["job"], rules=rules)
    return no_content()


async def pause_job(request: web.Request) -> web.Response:
    _ctx(request).state.pause_job(_sp(request), request.match_info["job"])
    return no_content()


async def restart_job(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    ctx.state.job(_sp(request), request.match_info["job"])
    data = await _body(request, required=False)
    criteria = data.get("criteria") or {}
    scope = criteria.get("resetScope") if isinstance(criteria, dict) else None
    if scope is not None and not isinstance(scope, str):
        raise bad_request("'criteria.resetScope' must be a string.")
    rules = cycle_rules(ctx, _sp(request))
    ctx.state.restart_job(_sp(request), request.match_info["job"], scope, rules=rules)
    return no_content()


async def validate_credentials(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    ctx.state.job(_sp(request), request.match_info["job"])
    await _validate(request, ctx)
    return no_content()


async def validate_credentials_collection(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    ctx.state.principal(_sp(request))
    await _validate(request, ctx, collection=True)
    return no_content()


async def _validate(request: web.Request, ctx: SandboxContext, *, collection: bool = False) -> None:
    data = await _body(request, required=True)
    if collection:
        ctx.state.require_template(_sp(request), data.get("templateId"))
    use_saved = data.get("useSavedCredentials", False)
    if not isinstance(use_saved, bool):
        raise bad_request("'useSavedCredentials' must be a boolean.")
    pairs = [] if use_saved else _pairs(data, "credentials")
    ctx.state.validate_credentials(_sp(request), pairs, use_saved=use_saved)


async def put_secrets(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    ctx.state.principal(_sp(request))
    data = await _body(request, required=True)
    if "value" not in data:
        raise bad_request("The request body must contain 'value': [{key, value}, ...].")
    ctx.state.save_secrets(_sp(request), _pairs(data, "value"))
    return no_content()


async def get_secrets(request: web.Request) -> web.Response:
    items = _ctx(request).state.get_secrets(_sp(request))
    context = _context_url(request, "synchronization/secrets")
    return graph_json({"@odata.context": context, "value": items})


async def unknown_path(request: web.Request) -> web.Response:
    segment = request.match_info.get("tail", "").split("/")[-1] or request.path
    raise GraphError(400, "BadRequest", f"Resource not found for the segment '{segment}'.")
