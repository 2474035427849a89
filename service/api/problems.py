"""RFC 9457 ``application/problem+json`` errors and the error answer the request middleware gives.

Every error the API answers has the same shape::

    {"type": "https://provisioner.invalid/problems/validation-error", "title": "...",
     "status": 422, "detail": "...", "errors": [{"field": "credentials[2].key", "reason": "..."}]}

Submitted values are never echoed: pydantic's ``input`` is dropped and each reason is built from
the error type and its constraints only, because a rejected value may be a secret.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypedDict

import structlog
from aiohttp import web
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from service.api.middleware import REQUEST_ID
from service.core.errors import StoreUnavailable

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_BASE = "https://provisioner.invalid/problems/"
STORE_RETRY_AFTER_S = 5

log = structlog.get_logger(__name__)

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

_REASONS = {
    "missing": "is required",
    "extra_forbidden": "is not a known field",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "int_type": "must be an integer",
    "list_type": "must be an array",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "none_required": "must be null",
}


class FieldError(TypedDict):
    """One offending field: its JSON path and why it was rejected (never its value)."""

    field: str
    reason: str


class Problem(Exception):
    """Raised by handlers to answer with a problem document."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        slug: str | None = None,
        errors: Sequence[FieldError] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.slug = slug or _slug(title)
        self.errors = list(errors)
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        """The problem as an aiohttp response."""
        return problem_response(
            self.status,
            self.title,
            self.detail,
            slug=self.slug,
            errors=self.errors,
            headers=self.headers,
        )


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "error"


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    slug: str | None = None,
    errors: Sequence[FieldError] = (),
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """Build an ``application/problem+json`` response."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + (slug or _slug(title)),
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = list(errors)
    response = web.Response(
        status=status,
        body=json.dumps(body).encode(),
        headers=dict(headers or {}),
    )
    response.content_type = PROBLEM_CONTENT_TYPE
    return response


def field_path(loc: Sequence[int | str]) -> str:
    """A pydantic location as a JSON path: ``("credentials", 2, "key")`` is ``credentials[2].key``.

    The empty location (the body itself) is ``body``.
    """
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _IDENTIFIER.match(part):
            path += f".{part}" if path else part
        else:
            path += f"[{json.dumps(part)}]"
    return path or "body"


def _size(bound: str, limit: object, ctx: dict[str, Any]) -> str:
    unit = {"List": "items", "Dictionary": "entries"}.get(str(ctx.get("field_type")))
    return f"must have {bound} {limit} {unit or 'characters'}"


# A constraint's reason from the error's context (the bound, never the input).
_CONSTRAINTS: dict[str, Callable[[dict[str, Any]], str]] = {
    "string_pattern_mismatch": lambda ctx: f"must match the pattern {ctx.get('pattern')}",
    "string_too_short": lambda ctx: f"must be at least {ctx.get('min_length')} characters",
    "string_too_long": lambda ctx: f"must be at most {ctx.get('max_length')} characters",
    "too_short": lambda ctx: _size("at least", ctx.get("min_length"), ctx),
    "too_long": lambda ctx: _size("at most", ctx.get("max_length"), ctx),
}


def _reason(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind in _REASONS:
        return _REASONS[kind]
    if kind == "value_error":
        return str(error["msg"]).removeprefix("Value error, ")
    if kind in _CONSTRAINTS:
        return _CONSTRAINTS[kind](dict(error.get("ctx") or {}))
    # pydantic's own message; built from the error type and constraints, never the input.
    return str(error["msg"])


def validation_problem(exc: ValidationError, detail: str | None = None) -> Problem:
    """A pydantic error as a problem: 400 when the body is not JSON at all, else 422."""
    details = exc.errors(include_url=False, include_input=False, include_context=True)
    if any(e["type"] == "json_invalid" for e in details):
        return Problem(400, "Malformed JSON", "The request body is not valid JSON.")
    errors = [FieldError(field=field_path(e["loc"]), reason=_reason(e)) for e in details]
    return Problem(
        422,
        "Validation error",
        detail or "The request does not match the schema; see errors.",
        slug="validation-error",
        errors=errors,
    )


def _from_http_exception(exc: web.HTTPException) -> Problem:
    headers = {
        k: v for k, v in exc.headers.items() if k.lower() not in {"content-type", "content-length"}
    }
    detail = exc.text or exc.reason
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        detail = "The request body is larger than this server accepts."
    elif isinstance(exc, web.HTTPNotFound):
        detail = "No such resource."
    elif isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        detail = f"{exc.method} is not allowed on this resource; allowed: {allowed}."
        headers["Allow"] = ",".join(sorted(exc.allowed_methods))
    return Problem(exc.status, exc.reason, detail, headers=headers)


def problem_for(request: web.Request, exc: Exception) -> Problem:
    """The one mapping of an error to its status, title and detail (an unexpected error is
    logged here, never sent). The API answers it as problem+json (:func:`problem_answer`);
    the status page renders it as an HTML page (:mod:`service.api.ui.errors`)."""
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, web.HTTPException):
        return _from_http_exception(exc)
    if isinstance(exc, StoreUnavailable):
        log.warning("store_unavailable", path=request.path)
        return Problem(
            503,
            "Service Unavailable",
            "The request store (Redis) cannot be reached; try again shortly.",
            slug="store-unavailable",
            headers={"Retry-After": str(STORE_RETRY_AFTER_S)},
        )
    request_id = request.get(REQUEST_ID, "")
    log.error("unhandled_error", path=request.path, method=request.method, exc_info=exc)
    return Problem(
        500,
        "Internal Server Error",
        f"An unexpected error occurred; quote request id {request_id} to support.",
        slug="internal-error",
    )


def problem_answer(request: web.Request, exc: Exception) -> web.Response:
    """Every error as problem+json (see :func:`problem_for`): the API's error answer, given to
    :func:`service.api.middleware.request_middleware`."""
    return problem_for(request, exc).response()
