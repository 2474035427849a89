"""The OpenAPI 3.1 document, built from the routes' own metadata and the pydantic models.

Every path comes from a route table entry whose handler carries an
:class:`~service.api.openapi.meta.Operation`; its parameters from the parameter models the
handler parses with (:mod:`service.api.params`), its bodies from :mod:`service.core.models`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from service.api.openapi.meta import Body, Operation, operation_of
from service.api.params import REQUEST_ID_PATTERN
from service.core.models import Record
from service.core.request import ProvisionRequest

__all__ = ["paths", "schemas"]

_REF = "#/components/schemas/{model}"

STATUS_TEXT = {
    200: "OK",
    202: "Accepted",
    400: "Malformed JSON or header",
    401: "Missing or invalid API key or Entra ID token",
    403: "The caller's access policy does not allow this",
    404: "Unknown id (or another caller's)",
    405: "Method not allowed; `Allow` lists the allowed ones",
    409: "Conflict with the request's state",
    413: "Body larger than the server accepts (64 KiB by default)",
    415: "Body is not application/json",
    422: "Validation error; `errors` names each field",
    429: "Too many requests from this caller; retry after Retry-After seconds",
    500: "Unexpected server error (quote the X-Request-Id)",
    503: "Redis unreachable or the queue is full; retry after Retry-After seconds",
}

_PROBLEM: dict[str, Any] = {
    "type": "object",
    "description": "An RFC 9457 problem document (application/problem+json).",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "reason"],
                "properties": {
                    "field": {
                        "type": "string",
                        "description": "JSON path, e.g. credentials[2].key",
                    },
                    "reason": {"type": "string"},
                },
            },
        },
    },
}

_PAGE: dict[str, Any] = {
    "type": "object",
    "required": ["items", "nextCursor"],
    "properties": {
        "items": {"type": "array", "items": {"$ref": "#/components/schemas/Record"}},
        "nextCursor": {
            "anyOf": [{"type": "string"}, {"type": "null"}],
            "description": "Pass as `cursor` for the next page; null on the last page.",
        },
    },
}


def _strip_titles(schema: Any) -> None:
    if isinstance(schema, dict):
        props = schema.get("properties")
        if isinstance(props, dict):
            for prop in props.values():
                if isinstance(prop, dict):
                    prop.pop("title", None)
        for value in schema.values():
            _strip_titles(value)
    elif isinstance(schema, list):
        for item in schema:
            _strip_titles(item)


def schemas() -> dict[str, Any]:
    """The component schemas: the request body, the record, problems and pages, and the
    applications' (:func:`service.api.applications.openapi_schemas`)."""
    from service.api.applications import openapi_schemas as application_schemas

    _, top = models_json_schema(
        [(ProvisionRequest, "validation"), (Record, "serialization")],
        by_alias=True,
        ref_template=_REF,
    )
    out: dict[str, Any] = copy.deepcopy(top["$defs"])
    out.update(application_schemas())
    _strip_titles(out)
    record = out["Record"]
    # Only what Record.public() returns (it drops internal fields), and all of it.
    public = Record(id="0" * 32, service_principal_id=str(UUID(int=0))).public()
    record["properties"] = {k: v for k, v in record["properties"].items() if k in public}
    record["required"] = list(record["properties"])
    record["properties"]["id"]["pattern"] = REQUEST_ID_PATTERN
    body = out["ProvisionRequest"]["properties"]
    body["callbackUrl"]["anyOf"][0].update({"format": "uri", "pattern": "^https://"})
    # Name an existing principal or a gallery app to create (issue 13), not both.
    out["ProvisionRequest"]["oneOf"] = [
        {"required": ["servicePrincipalId"], "not": {"required": ["application"]}},
        {"required": ["application"], "not": {"required": ["servicePrincipalId"]}},
    ]
    out["Problem"] = _PROBLEM
    out["RecordPage"] = _PAGE
    return out


def _content(body: Body) -> dict[str, Any]:
    if body.schema is not None:
        schema: dict[str, Any] = {"$ref": _REF.format(model=body.schema)}
    elif body.content_type == "text/plain":
        schema = {"type": "string"}
    else:
        schema = {"type": "object"}
    return {body.content_type: {"schema": schema}}


def _responses(op: Operation) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status, body in op.ok.items():
        entry: dict[str, Any] = {"description": STATUS_TEXT[status], "content": _content(body)}
        if body.location:
            entry["headers"] = {
                "Location": {"schema": {"type": "string"}, "description": "The record's URL."}
            }
        out[str(status)] = entry
    for status in [*op.problems, 500]:
        entry = {
            "description": STATUS_TEXT[status],
            "content": {
                "application/problem+json": {"schema": {"$ref": _REF.format(model="Problem")}}
            },
        }
        if status in (429, 503):
            entry["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
        if status == 401:
            entry["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
        out[str(status)] = entry
    return out


def _unwrap_optional(schema: dict[str, Any]) -> dict[str, Any]:
    """``anyOf: [X, {type: null}]`` (an optional parameter) is just X as a parameter."""
    variants = [v for v in schema.get("anyOf", []) if v != {"type": "null"}]
    if len(variants) == 1:
        rest = {k: v for k, v in schema.items() if k != "anyOf"}
        return {**variants[0], **rest}
    return schema


def model_parameters(model: type[BaseModel], where: str) -> list[dict[str, Any]]:
    """One parameter per field of a parameter model, in ``where`` (query or path)."""
    schema = model.model_json_schema(by_alias=True, ref_template=_REF)
    defs = schema.get("$defs", {})
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema["properties"].items():
        prop = _unwrap_optional(copy.deepcopy(prop))
        if "$ref" in prop:  # an enum: inline it, parameters have no components of their own
            ref = defs[prop.pop("$ref").rsplit("/", 1)[-1]]
            prop = {"type": ref.get("type", "string"), "enum": ref["enum"], **prop}
        prop.pop("title", None)
        if prop.get("default") is None:
            prop.pop("default", None)
        params.append(
            {
                "name": name,
                "in": where,
                "required": where == "path" or name in required,
                "description": prop.pop("description", ""),
                "schema": prop,
            }
        )
    return params


def _operation(op: Operation) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary}
    if op.description:
        out["description"] = op.description
    if op.public:
        out["security"] = []
    params: list[dict[str, Any]] = []
    if op.path is not None:
        params += model_parameters(op.path, "path")
    if op.query is not None:
        params += model_parameters(op.query, "query")
    for header in op.headers:
        params.append(
            {
                "name": header.name,
                "in": "header",
                "required": False,
                "description": header.description,
                "schema": dict(header.schema),
            }
        )
    if params:
        out["parameters"] = params
    if op.body is not None:
        ref = {"$ref": _REF.format(model=op.body.__name__)}
        out["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref}}}
    elif op.raw_body:
        out["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    out["responses"] = _responses(op)
    return out


def paths(
    tables: Iterable[web.RouteTableDef], extra: Mapping[tuple[str, str], Operation]
) -> dict[str, Any]:
    """The ``paths`` of every route with an operation (its own, or one in ``extra`` keyed by
    ``(METHOD, path)`` for a handler that carries none); routes with neither are not part of
    the API (the status page's)."""
    out: dict[str, Any] = {}
    for table in tables:
        for route in table:
            if not isinstance(route, web.RouteDef):
                continue
            op = operation_of(route.handler) or extra.get((route.method, route.path))
            if op is not None:
                out.setdefault(route.path, {})[route.method.lower()] = _operation(op)
    return out
