"""A Graph answer as the client returns it, and the mapping of a body or an error answer to it.

A 2xx body is parsed once into a pydantic model; one that does not fit, and every non-2xx
answer, become a :class:`~service.core.errors.GraphError` quoting Graph's status, error code,
message, ``request-id`` and ``Retry-After``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from service.core.errors import GraphError
from workers.graph.models import ODataError
from workers.workflow.retry import parse_retry_after

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class GraphResponse(Generic[T]):
    """A 2xx answer: its status, the parsed value and the ids to quote."""

    status: int
    value: T
    request_id: str | None
    client_request_id: str
    throttle_usage: str | None = None  # x-ms-throttle-limit-percentage, when Graph sent it


def parse(model: type[M], resp: GraphResponse[Any], method: str, url: str) -> M:
    """The answer's body as ``model``; a body that does not fit is Graph's error, not ours."""
    try:
        return model.model_validate(resp.value if resp.value is not None else {})
    except ValidationError as e:
        raise malformed(resp, method, url, model, e) from None


def parse_item(model: type[M], raw: dict[str, Any], page: GraphResponse[Any], url: str) -> M:
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        raise malformed(page, "GET", url, model, e) from None


def malformed(
    resp: GraphResponse[Any], method: str, url: str, model: type[BaseModel], e: ValidationError
) -> GraphError:
    first = e.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    return GraphError(
        resp.status,
        "MalformedResponse",
        f"the answer is not a {model.__name__}: {where}: {first['msg']}",
        resp.request_id,
        client_request_id=resp.client_request_id,
        method=method,
        url=url,
    )


def loads(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def error_answer(
    status: int,
    parsed: Any,
    request_id: str | None,
    retry_after: str | None,
    crid: str,
    method: str,
    url: str,
) -> GraphError:
    """A non-2xx answer as Graph's error: its code and message, the ``request-id`` (the header,
    else the body's ``innerError``) and the parsed ``Retry-After``."""
    err = ODataError.parse(parsed)
    inner_request_id = err.inner_error.request_id if err.inner_error else None
    return GraphError(
        status,
        err.code or f"HTTP{status}",
        err.message or "",
        request_id or inner_request_id,
        parse_retry_after(retry_after),
        client_request_id=crid,
        method=method,
        url=url,
    )
