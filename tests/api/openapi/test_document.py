"""The OpenAPI document: 3.1 shape, every route of the app, and docs/api.md in sync."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from service.api.app import create_app
from service.api.openapi import build_openapi
from service.core import errors
from tests.api.test_routes import api_client, make_settings
from workers.workflow import onboarding_errors

ROOT = Path(__file__).resolve().parents[3]

METHODS = {"get", "post", "put", "patch", "delete"}


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_document_has_openapi_31_shape() -> None:
    doc = build_openapi()
    assert doc["openapi"].startswith("3.1.")
    assert doc["info"]["title"]
    assert doc["info"]["version"]
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key, or an Entra ID access token for this API.",
    }
    assert doc["security"] == [{"bearerAuth": []}]
    op_ids = []
    for path, item in doc["paths"].items():
        assert path.startswith("/")
        for method, op in item.items():
            assert method in METHODS
            op_ids.append(op["operationId"])
            assert op["responses"], (method, path)
            for status, response in op["responses"].items():
                assert status.isdigit()
                assert response["description"]
                assert response["content"]
            for param in op.get("parameters", []):
                assert {"name", "in", "schema"} <= set(param)
                if param["in"] == "path":
                    assert param["required"] is True
                    assert "{" + param["name"] + "}" in path
    assert len(op_ids) == len(set(op_ids))


def test_every_ref_resolves() -> None:
    doc = build_openapi()
    schemas = doc["components"]["schemas"]
    for ref in _refs(doc):
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[-1] in schemas, ref


def test_operations_list_their_statuses() -> None:
    paths = build_openapi()["paths"]
    create = paths["/v1/provisioning-requests"]["post"]["responses"]
    assert {"200", "202", "400", "401", "409", "413", "415", "422", "503", "500"} <= set(create)
    assert "Location" in create["202"]["headers"]
    assert "Retry-After" in create["503"]["headers"]
    assert create["422"]["content"]["application/problem+json"]
    for action in ("cancel", "retry"):
        responses = paths[f"/v1/provisioning-requests/{{id}}/{action}"]["post"]["responses"]
        assert {"200", "202", "401", "404", "409", "503"} <= set(responses)
    assert "503" in paths["/readyz"]["get"]["responses"]
    for public in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert paths[public]["get"]["security"] == []


def test_schemas_come_from_the_models() -> None:
    schemas = build_openapi()["components"]["schemas"]
    body = schemas["ProvisionRequest"]
    assert [o["required"] for o in body["oneOf"]] == [["servicePrincipalId"], ["application"]]
    assert body["additionalProperties"] is False
    assert schemas["Credential"]["properties"]["value"]["writeOnly"] is True
    record = schemas["Record"]["properties"]
    assert {"id", "state", "step", "servicePrincipalId", "templateId", "jobId", "attempts"} <= set(
        record
    )
    assert {"createdAt", "updatedAt", "externalReference", "history", "error"} <= set(record)
    assert "retryUntil" not in record
    assert "lagSince" not in record
    assert {"type", "title", "status", "detail"} <= set(schemas["Problem"]["required"])


def test_every_error_code_is_in_the_schema_and_the_runbook() -> None:
    """``ErrorInfo.code`` names every code a request can end with besides Graph's own, and the
    runbook explains each: a new failure class or ``code="..."`` that is not listed fails."""
    classes = [
        c
        for module in (errors, onboarding_errors)
        for _, c in inspect.getmembers(module, inspect.isclass)
        if issubclass(c, errors.WorkflowFailed) and c is not errors.WorkflowFailed
    ]
    sources = [p.read_text() for d in ("service", "workers") for p in (ROOT / d).rglob("*.py")]
    literals = {c for text in sources for c in re.findall(r'code="([A-Z][A-Za-z]+)"', text)}
    found = {c.code for c in classes} | literals
    assert {"JobFailing", "GraphPermissionMissing", "RequestStuck"} <= found  # the scan works
    assert found <= set(errors.SERVICE_ERROR_CODES), found - set(errors.SERVICE_ERROR_CODES)
    code = build_openapi()["components"]["schemas"]["ErrorInfo"]["properties"]["code"]
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    for name in errors.SERVICE_ERROR_CODES:
        assert f"`{name}`" in code["description"], name
        assert f"`{name}`" in runbook, name


def test_every_app_route_is_documented(redis_url: str) -> None:
    app = create_app(make_settings(redis_url))
    documented = {
        (method.upper(), path) for path, item in build_openapi()["paths"].items() for method in item
    }
    # /ui is the HTML status page for people (docs/ui.md), not part of the JSON API contract;
    # listing its text/html pages and form posts here would also send schemathesis at them.
    served = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
        and route.method != "HEAD"
        and not route.resource.canonical.startswith("/ui")
    }
    assert served == documented
    assert any(route.resource.canonical == "/ui" for route in app.router.routes() if route.resource)


async def test_served_without_auth(redis: Redis, redis_url: str) -> None:
    async with api_client(make_settings(redis_url)) as client:
        resp = await client.get("/openapi.json")
        assert resp.status == 200
        assert await resp.json() == build_openapi()


def test_parameters_are_rendered_from_the_models_the_handlers_parse_with() -> None:
    from service.api import params
    from service.api.openapi.meta import operation_of
    from service.api.routes import get_request, list_requests

    paths = build_openapi()["paths"]
    listing = {p["name"]: p for p in paths[params_base()]["get"]["parameters"]}
    assert set(listing) == {a or n for n, a in _aliases(params.ListParams)}
    limit = listing["limit"]["schema"]
    assert (limit["minimum"], limit["maximum"], limit["default"]) == (
        1,
        params.MAX_LIMIT,
        params.DEFAULT_LIMIT,
    )
    assert listing["state"]["schema"]["enum"] == [
        "queued",
        "running",
        "succeeded",
        "failed",
        "cancelled",
    ]
    assert listing["cursor"]["schema"]["pattern"] == params.CURSOR_PATTERN
    item = paths[params_base() + "/{id}"]["get"]["parameters"][0]
    assert (item["in"], item["required"]) == ("path", True)
    assert item["schema"]["pattern"] == params.REQUEST_ID_PATTERN
    # The handlers carry the very models rendered.
    assert operation_of(list_requests).query is params.ListParams  # type: ignore[union-attr]
    assert operation_of(get_request).path is params.RequestPath  # type: ignore[union-attr]


def params_base() -> str:
    return "/v1/provisioning-requests"


def _aliases(model: Any) -> list[tuple[str, str | None]]:
    return [(name, f.alias) for name, f in model.model_fields.items()]
