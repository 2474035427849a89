"""The API's parameter models: parsed by the handlers and rendered into the OpenAPI document.

Each limit and pattern is written once, here: :class:`ListParams` is what
``GET /v1/provisioning-requests`` (and the status page's list) parse ``request.query`` into,
:class:`RequestPath` the ``{id}`` of the per-request routes, and :data:`IDEMPOTENCY_KEY` the
``Idempotency-Key`` header's limits. :mod:`service.api.openapi` renders them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from service.api.problems import validation_problem
from service.core.fields import Guid
from service.core.health import Health
from service.core.models import State

__all__ = [
    "DEFAULT_LIMIT",
    "IDEMPOTENCY_KEY_MAX",
    "MAX_LIMIT",
    "REQUEST_ID_PATTERN",
    "ApplicationListParams",
    "ApplicationPath",
    "ListParams",
    "RequestPath",
    "is_request_id",
    "parse_list_params",
]

#: Request ids are ``uuid4().hex``: 32 lowercase hex digits, never mistaken for a GUID.
REQUEST_ID_PATTERN = r"^[0-9a-f]{32}$"
_REQUEST_ID = re.compile(REQUEST_ID_PATTERN)
MAX_LIMIT = 200
DEFAULT_LIMIT = 50
IDEMPOTENCY_KEY_MAX = 255
CALLER_PATTERN = r"^[\x21-\x7e]{1,200}$"
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{1,512}$"
Q = TypeVar("Q", bound=BaseModel)

RequestId = Annotated[str, StringConstraints(pattern=REQUEST_ID_PATTERN)]


def is_request_id(value: str) -> bool:
    """True when ``value`` has the form of a request id (else the answer is a 404)."""
    return bool(_REQUEST_ID.match(value))


class RequestPath(BaseModel):
    """The path of ``/v1/provisioning-requests/{id}`` and its actions."""

    id: RequestId = Field(description="The request id: 32 lowercase hex digits (uuid4 hex).")


def _digits(value: object) -> object:
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError("must be an integer")  # not "1e2", "+5", " 5" or full-width digits
    return value


class ListParams(BaseModel):
    """The query of a listing; unknown parameters are refused (422)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=False, frozen=True)

    state: State | None = Field(default=None, description="Only this state.")
    service_principal_id: Guid | None = Field(
        default=None, alias="servicePrincipalId", description="Only this service principal."
    )
    caller: Annotated[str, StringConstraints(pattern=CALLER_PATTERN)] | None = Field(
        default=None,
        description="Only this caller's requests. Other callers than yourself need the "
        "`operator` permission; without it the listing is always your own.",
    )
    cursor: Annotated[str, StringConstraints(pattern=CURSOR_PATTERN)] | None = Field(
        default=None, description="`nextCursor` of the previous page."
    )
    limit: Annotated[int, BeforeValidator(_digits)] = Field(
        default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="Page size."
    )


def parse_list_params(query: Mapping[str, str], *, drop_empty: bool = False) -> ListParams:
    """Parse a query string's parameters (the API's list, and the status page's with
    ``drop_empty``: a form's blank fields); a :class:`~service.api.problems.Problem` (422
    naming each field, ``errors``) when
    one is unknown or out of its limits."""
    data = {k: v.strip() if drop_empty else v for k, v in query.items()}
    if drop_empty:
        data = {k: v for k, v in data.items() if v}
    elif data.get("cursor") == "":
        del data["cursor"]
    return _query(ListParams, data)


class ApplicationPath(BaseModel):
    """The path of ``/v1/applications/{servicePrincipalId}``."""

    service_principal_id: Guid = Field(
        alias="servicePrincipalId", description="The service principal's object id."
    )


class ApplicationListParams(BaseModel):
    """The query of ``GET /v1/applications``; unknown parameters are refused (422)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=False, frozen=True)

    health: Health | None = Field(default=None, description="Only those with a job in it.")
    cursor: Annotated[str, StringConstraints(pattern=CURSOR_PATTERN)] | None = Field(
        default=None, description="`nextCursor` of the previous page."
    )
    limit: Annotated[int, BeforeValidator(_digits)] = Field(
        default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="Page size."
    )


def parse_application_params(query: Mapping[str, str]) -> ApplicationListParams:
    """Parse ``GET /v1/applications``'s query; a 422 problem naming each bad field."""
    data = {k: v for k, v in query.items() if not (k == "cursor" and v == "")}
    return _query(ApplicationListParams, data)


def _query(model: type[Q], data: dict[str, str]) -> Q:
    """``data`` as ``model``; a 422 problem naming each bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise validation_problem(e, "The query parameters are not valid; see errors.") from None
