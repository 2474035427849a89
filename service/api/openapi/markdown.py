"""``docs/api.md``: the OpenAPI document rendered as markdown."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["render_markdown"]


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
        for key in (
            "format",
            "pattern",
            "minLength",
            "maxLength",
            "minimum",
            "maximum",
            "maxItems",
            "maxProperties",
        ):
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
            notes = " ".join(filter(None, [p["description"], _constraints(p["schema"])]))
            notes = notes.replace("|", "\\|")
            lines.append(f"| `{p['name']}` | {p['in']} | {_type(p['schema'])} | {notes} |")
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
