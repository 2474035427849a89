"""Who may see and act on which request: one place for the API, the webhooks and ``/ui``.

- :func:`granted` / :func:`require`: the caller's permissions from the access policy (and, for
  an Entra token, its roles). ``read`` to read and list, ``write`` to submit, retry and cancel.
- :func:`visible_record`: a caller sees its own records; with ``operator`` every caller's.
  Anything else answers 404, exactly like an unknown id.
- :func:`list_caller`: whose records a listing reads (the caller's own unless an operator asks
  for another caller, or for all of them).
- :func:`authorize_action`: a retry or cancel passes the target policy (principal, template) of
  the acting caller and of the request's owner, as a new request would.
"""

from __future__ import annotations

from aiohttp import web

from service.api.auth.keys import CALLER, TOKEN_ROLES
from service.api.auth.policy import Permission
from service.api.params import ListParams, is_request_id
from service.api.problems import Problem
from service.api.state import POLICY, STORE
from service.core.models import Record

__all__ = [
    "authorize_action",
    "forbidden",
    "granted",
    "is_operator",
    "list_caller",
    "may",
    "not_found",
    "require",
    "visible_record",
]


def forbidden(detail: str) -> Problem:
    """A 403 problem."""
    return Problem(403, "Forbidden", detail)


def not_found() -> Problem:
    """The 404 of an unknown (or someone else's) request id."""
    return Problem(404, "Not Found", "No provisioning request with this id.")


def granted(request: web.Request, caller: str | None = None) -> frozenset[Permission]:
    """What the request's caller (or ``caller``, with the request's token roles) may do."""
    name = request[CALLER] if caller is None else caller
    return request.app[POLICY].permissions(name, request.get(TOKEN_ROLES))


def may(request: web.Request, permission: Permission, caller: str | None = None) -> bool:
    """True when the caller holds ``permission`` (the status page's login check uses this)."""
    return permission in granted(request, caller)


def require(request: web.Request, permission: Permission) -> None:
    """403 unless the caller's policy (and token roles) grant ``permission``."""
    if not may(request, permission):
        raise forbidden(f"This caller lacks the {permission.value!r} permission.")


def is_operator(request: web.Request) -> bool:
    """True when the caller may see and act on every caller's requests."""
    return may(request, Permission.OPERATOR)


def can_see(request: web.Request, record: Record) -> bool:
    """True when the caller may see ``record``: its own, or any with ``operator``."""
    return record.caller == request[CALLER] or is_operator(request)


async def visible_record(request: web.Request, request_id: str, permission: Permission) -> Record:
    """The record the caller asks for, when it holds ``permission`` and may see it; else
    403 (no permission) or 404 (unknown, malformed or another caller's id)."""
    require(request, permission)
    if not is_request_id(request_id):
        raise not_found()
    record = await request.app[STORE].get(request_id)
    if record is None or not can_see(request, record):
        raise not_found()
    return record


def list_caller(request: web.Request, params: ListParams) -> str | None:
    """Whose records a listing reads: the caller's own; an operator's choice (``caller``, or
    None for every caller's). A non-operator naming another caller gets a 403."""
    caller = request[CALLER]
    if params.caller in (None, caller):
        return None if params.caller is None and is_operator(request) else caller
    if not is_operator(request):
        raise forbidden("Listing another caller's requests needs the 'operator' permission.")
    return params.caller


def authorize_action(request: web.Request, record: Record) -> None:
    """403 unless the acting caller, and the request's owner, may still provision its
    service principal and template (a policy may have changed since it was accepted); a
    gallery app request whose app is not made yet needs the right to create apps."""
    policy = request.app[POLICY]
    template = record.requested_template_id
    for who in dict.fromkeys((request[CALLER], record.caller)):
        reason = policy.request_allowed(who, record.service_principal_id, template)
        if reason is not None:
            owner = "" if who == request[CALLER] else " (the request's owner)"
            raise forbidden(f"{reason[0].upper()}{reason[1:]}{owner}.")
