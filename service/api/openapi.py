"""The API's OpenAPI 3.1 document, built from the pydantic models: the single source of truth.

``GET /openapi.json`` serves it; ``docs/api.md`` is rendered from it (a test keeps the two in
sync). Regenerate the docs with::

    python -m service.api.openapi markdown > docs/api.md
"""

from __future__ import annotations

import copy
import json
import sys
from functools import cache
from typing import Any
from uuid import UUID

from pydantic.json_schema import models_json_schema

from service.core.models import ProvisionRequest, Record, State

BASE = "/v1/provisioning-requests"
_REF = "#/components/schemas/{model}"

_STATUS_TEXT = {
    200: "OK",
    202: "Accepted",
    400: "Malformed JSON or header",
    401: "Missing or invalid API key or Entra ID token",
    403: "The caller's access policy does not allow this",
    404: "Unknown id (or another caller's)",
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

_ID_PARAM = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "The request id: 32 lowercase hex digits (uuid4 without dashes).",
    "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
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


def _schemas() -> dict[str, Any]:
    _, top = models_json_schema(
        [(ProvisionRequest, "validation"), (Record, "serialization")],
        by_alias=True,
        ref_template=_REF,
    )
    schemas: dict[str, Any] = copy.deepcopy(top["$defs"])
    _strip_titles(schemas)
    record = schemas["Record"]
    # Only what Record.public() returns (it drops worker-internal fields).
    public = Record(id="0" * 32, service_principal_id=str(UUID(int=0))).public()
    record["properties"] = {k: v for k, v in record["properties"].items() if k in public}
    # public() always writes every field, so every field is present in a response.
    record["required"] = list(record["properties"])
    record["properties"]["id"]["pattern"] = "^[0-9a-f]{32}$"
    body = schemas["ProvisionRequest"]["properties"]
    body["servicePrincipalId"]["format"] = "uuid"
    body["callbackUrl"]["anyOf"][0].update({"format": "uri", "pattern": "^https://"})
    schemas["Problem"] = _PROBLEM
    schemas["RecordPage"] = _PAGE
    return schemas


def _json_content(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}


def _responses(
    ok: dict[int, dict[str, Any]], problems: list[int], *, retry_after: bool = True
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status, response in ok.items():
        out[str(status)] = {"description": _STATUS_TEXT[status], **response}
    for status in [*problems, 500]:
        entry: dict[str, Any] = {
            "description": _STATUS_TEXT[status],
            "content": {
                "application/problem+json": {"schema": {"$ref": _REF.format(model="Problem")}}
            },
        }
        if status in (429, 503) and retry_after:
            entry["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
        if status == 401:
            entry["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
        out[str(status)] = entry
    return out


def _record_response(*, location: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {"content": _json_content("Record")}
    if location:
        response["headers"] = {
            "Location": {"schema": {"type": "string"}, "description": "The record's URL."}
        }
    return response


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def _header(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": {"type": "string"},
    }


_WEBHOOK_DESCRIPTION = (
    "A ticketing system's delivery, authenticated by the source's kind instead of the bearer "
    "scheme: `jira` by `X-Hub-Signature: sha256=<hex HMAC of the body>`, `standard` by the "
    "Standard Webhooks headers (5-minute tolerance), `servicenow` by those headers or a bearer "
    "token of an allowed caller. The payload is mapped to a provisioning request by the source's "
    "configured mapping (see docs/webhooks.md). 202 with the new request; a redelivery (same "
    "delivery id) answers the first response and enqueues nothing; 200 while a request for the "
    "same app is in flight. Unknown source: 404; bad signature or stale timestamp: 401."
)


def _webhook_path(public: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "post": {
            "operationId": "receiveWebhook",
            "summary": "Accept a provisioning request from a ticketing system",
            "description": _WEBHOOK_DESCRIPTION,
            "security": public,
            "parameters": [
                {
                    "name": "source",
                    "in": "path",
                    "required": True,
                    "description": "A configured webhook source (PROVISIONER_WEBHOOKS_FILE).",
                    "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,63}$"},
                },
                _header("X-Hub-Signature", "`sha256=<hex>` (jira)."),
                _header("X-Atlassian-Webhook-Identifier", "Delivery id (jira)."),
                _header("webhook-id", "Delivery id (standard, servicenow)."),
                _header("webhook-timestamp", "Unix seconds (standard, servicenow)."),
                _header("webhook-signature", "`v1,<base64>` entries (standard, servicenow)."),
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            "responses": _responses(
                {202: _record_response(location=True), 200: _record_response(location=True)},
                [400, 401, 403, 404, 409, 413, 422, 429, 503],
            ),
        }
    }


def _paths() -> dict[str, Any]:
    public: list[dict[str, Any]] = []
    action_problems = [401, 403, 404, 409, 503]
    return {
        BASE: {
            "post": {
                "operationId": "createProvisioningRequest",
                "summary": "Ask for provisioning of a service principal",
                "description": (
                    "202 when stored and queued; 200 with the existing record while a request for "
                    "the same (servicePrincipalId, templateId) is queued or running. With "
                    "`Idempotency-Key`, the same key and body replay the first response, another "
                    "body gives 422 and a still-running first request 409. A request for the same "
                    "app that is in flight for another caller also gives 409. 403 when the "
                    "caller's access policy does not allow writes, this service principal or "
                    "template; "
                    "429 past the caller's rate limit and 503 when the queue is full (both with "
                    "Retry-After). A `callbackUrl` must be https and must not resolve to a "
                    "loopback, private, link-local or metadata address (422)."
                ),
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "description": "1-255 characters, scoped to the caller, kept 24 h.",
                        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                    }
                ],
                "requestBody": {"required": True, "content": _json_content("ProvisionRequest")},
                "responses": _responses(
                    {202: _record_response(location=True), 200: _record_response(location=True)},
                    [400, 401, 403, 404, 409, 413, 415, 422, 429, 503],
                ),
            },
            "get": {
                "operationId": "listProvisioningRequests",
                "summary": "A page of the caller's requests, newest first",
                "parameters": [
                    _query(
                        "state",
                        "Only this state.",
                        {"type": "string", "enum": [s.value for s in State]},
                    ),
                    _query(
                        "servicePrincipalId",
                        "Only this service principal.",
                        {"type": "string", "format": "uuid"},
                    ),
                    _query("cursor", "`nextCursor` of the previous page.", {"type": "string"}),
                    _query(
                        "limit",
                        "Page size.",
                        {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
                    ),
                ],
                "responses": _responses(
                    {200: {"content": _json_content("RecordPage")}}, [401, 403, 422, 503]
                ),
            },
        },
        BASE + "/{id}": {
            "get": {
                "operationId": "getProvisioningRequest",
                "summary": "One of the caller's requests",
                "parameters": [_ID_PARAM],
                "responses": _responses({200: _record_response()}, [401, 403, 404, 503]),
            }
        },
        BASE + "/{id}/cancel": {
            "post": {
                "operationId": "cancelProvisioningRequest",
                "summary": "Cancel a queued or running request",
                "description": (
                    "A queued request is cancelled at once; a running one stops at its next step "
                    "boundary or wait (202: it will end cancelled; a started job stays "
                    "started). Already cancelled: 200. Succeeded or failed: 409."
                ),
                "parameters": [_ID_PARAM],
                "responses": _responses(
                    {202: _record_response(), 200: _record_response()}, action_problems
                ),
            }
        },
        BASE + "/{id}/retry": {
            "post": {
                "operationId": "retryProvisioningRequest",
                "summary": "Re-drive a failed request from its last completed step",
                "description": (
                    "Failed: 202. Already queued or running: 200. Succeeded or cancelled: 409."
                ),
                "parameters": [_ID_PARAM],
                "responses": _responses(
                    {202: _record_response(), 200: _record_response()}, action_problems
                ),
            }
        },
        "/v1/webhooks/{source}": _webhook_path(public),
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Liveness",
                "security": public,
                "responses": _responses(
                    {200: {"content": {"application/json": {"schema": {"type": "object"}}}}}, []
                ),
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Readiness: Redis answers",
                "security": public,
                "responses": _responses(
                    {200: {"content": {"application/json": {"schema": {"type": "object"}}}}}, [503]
                ),
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus counters (text format 0.0.4)",
                "security": public,
                "responses": _responses(
                    {200: {"content": {"text/plain": {"schema": {"type": "string"}}}}}, []
                ),
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "security": public,
                "responses": _responses(
                    {200: {"content": {"application/json": {"schema": {"type": "object"}}}}}, []
                ),
            }
        },
    }


@cache
def _build() -> str:
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
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
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


# markdown ------------------------------------------------------------------------------------
def _type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " or ".join(_type(s) for s in schema["anyOf"])
    if "enum" in schema:
        return "one of " + ", ".join(f"`{v}`" for v in schema["enum"])
    if schema.get("type") == "array":
        return f"array of {_type(schema.get('items', {}))}"
    if schema.get("type") == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"map of {_type(schema['additionalProperties'])}"
    return str(schema.get("type", "any"))


def _constraints(schema: dict[str, Any]) -> str:
    notes: list[str] = []
    for variant in [schema, *schema.get("anyOf", [])]:
        for key in ("format", "pattern", "minLength", "maxLength", "maxItems", "maxProperties"):
            if key in variant:
                notes.append(f"{key} `{variant[key]}`")
    if "default" in schema:
        notes.append(f"default `{json.dumps(schema['default'])}`")
    if schema.get("writeOnly"):
        notes.append("write-only, never returned")
    return "; ".join(notes)


def _schema_md(name: str, schema: dict[str, Any]) -> list[str]:
    lines = [f"### {name}", ""]
    if schema.get("description"):
        lines += [str(schema["description"]).replace("``", "`"), ""]
    if "enum" in schema:
        return [*lines, "Values: " + ", ".join(f"`{v}`" for v in schema["enum"]), ""]
    required = set(schema.get("required", []))
    lines += ["| Field | Type | Required | Notes |", "|---|---|---|---|"]
    for field, prop in schema.get("properties", {}).items():
        notes = " ".join(filter(None, [prop.get("description", ""), _constraints(prop)]))
        yes = "yes" if field in required else "no"
        notes = notes.replace("|", "\\|")
        lines.append(f"| `{field}` | {_type(prop)} | {yes} | {notes} |")
    return [*lines, ""]


def _operation_md(method: str, path: str, op: dict[str, Any]) -> list[str]:
    if op.get("security") == []:
        auth = "signed, no bearer token" if "webhook" in op["operationId"].lower() else "public"
    else:
        auth = "bearer API key or Entra ID token"
    lines = [f"## {method.upper()} {path}", "", f"{op['summary']} ({auth}).", ""]
    if op.get("description"):
        lines += [op["description"], ""]
    if op.get("parameters"):
        lines += ["| Parameter | In | Type | Description |", "|---|---|---|---|"]
        for p in op["parameters"]:
            lines.append(
                f"| `{p['name']}` | {p['in']} | {_type(p['schema'])} | {p['description']} |"
            )
        lines.append("")
    if "requestBody" in op:
        ref = op["requestBody"]["content"]["application/json"]["schema"]
        lines += [f"Body: `application/json`, {_type(ref)}.", ""]
    lines += ["| Status | Meaning | Body |", "|---|---|---|"]
    for status, response in op["responses"].items():
        ctype, media = next(iter(response["content"].items()))
        lines.append(
            f"| {status} | {response['description']} | `{ctype}` {_type(media['schema'])} |"
        )
    return [*lines, ""]


def render_markdown(doc: dict[str, Any]) -> str:
    """``docs/api.md``: every operation and schema of the document."""
    lines = [
        "# Intake API reference",
        "",
        "Generated from `GET /openapi.json` by "
        "`python -m service.api.openapi markdown > docs/api.md`;",
        "do not edit by hand. Errors are `application/problem+json` (RFC 9457) with `type`,",
        "`title`, `status`, `detail` and, for validation errors, `errors: [{field, reason}]`.",
        "Every response carries `X-Request-Id` (the caller's, when sane, else a new one).",
        "",
    ]
    for path, item in doc["paths"].items():
        for method, op in item.items():
            lines += _operation_md(method, path, op)
    lines += ["## Schemas", ""]
    for name, schema in doc["components"]["schemas"].items():
        lines += _schema_md(name, schema)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m service.api.openapi [json|markdown]``: print the document or its markdown."""
    args = sys.argv[1:] if argv is None else argv
    doc = build_openapi()
    if args[:1] == ["markdown"]:
        sys.stdout.write(render_markdown(doc))
    else:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
