"""What a route says about itself for the OpenAPI document, attached to its handler.

::

    @routes.get(BASE)
    @operation(
        "listProvisioningRequests",
        "A page of the caller's requests, newest first",
        ok={200: Body("RecordPage")},
        problems=(401, 403, 422, 503),
        query=ListParams,
    )
    async def list_requests(request): ...

The parameter models (``query``, ``path``) are the ones the handler parses with, so their
limits and patterns reach the document without being written again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel

__all__ = ["Body", "Header", "Operation", "operation", "operation_of"]

F = TypeVar("F", bound=Callable[..., Any])
_ATTR = "__openapi_operation__"


@dataclass(frozen=True, slots=True)
class Body:
    """A response body: a component schema by name (``Record``, ``RecordPage``), or, with
    ``schema=None``, any JSON object (or string for ``text/plain``)."""

    schema: str | None = None
    content_type: str = "application/json"
    location: bool = False  # the answer carries the record's URL in Location


@dataclass(frozen=True, slots=True)
class Header:
    """A request header parameter."""

    name: str
    description: str
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation of the document."""

    operation_id: str
    summary: str
    ok: Mapping[int, Body]
    problems: tuple[int, ...] = ()
    description: str = ""
    body: type[BaseModel] | None = None  # a JSON request body of this model
    raw_body: bool = False  # a JSON object the handler maps itself (webhooks)
    query: type[BaseModel] | None = None
    path: type[BaseModel] | None = None
    headers: tuple[Header, ...] = ()
    public: bool = False  # no bearer token (health, metrics, signed webhooks)


def operation(
    operation_id: str,
    summary: str,
    *,
    ok: Mapping[int, Body],
    problems: tuple[int, ...] = (),
    **more: Any,
) -> Callable[[F], F]:
    """Attach an :class:`Operation` to a handler (put it under the route decorator)."""
    op = Operation(operation_id, summary, ok, problems, **more)

    def attach(handler: F) -> F:
        setattr(handler, _ATTR, op)
        return handler

    return attach


def operation_of(handler: object) -> Operation | None:
    """The operation attached to a handler, if any."""
    op = getattr(handler, _ATTR, None)
    return op if isinstance(op, Operation) else None
