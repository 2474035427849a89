"""Gallery apps in the sandbox: templates with $filter, instantiate (and its faults), principals
by template, app role assignments and job schemas (in-process sandbox over TLS)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from tests.helpers.sandbox import InProcessSandbox, in_process_sandbox

ONBOARDING_APP = "8c4d2e6f-1a3b-4c5d-9e7f-0a1b2c3d4e5f"
SYNC_ONLY_APP = "adf03846-4f4d-4731-8425-4f4b2d8e0197"
SERVICENOW = "6f3b2a4e-1c55-4a8e-9b1e-5d2c8f7a9e01"
SCIM_APP = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c04"
USER_ROLE = "18d14569-c3bd-439b-9a66-3a2aee01d14f"
GROUP = "0a1b2c3d-0000-4000-8000-000000000001"
ZERO = "00000000-0000-0000-0000-000000000000"


@pytest.fixture(scope="module")
def certs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sandbox-gallery")


@pytest.fixture
async def sb(certs_dir: Path) -> AsyncIterator[InProcessSandbox]:
    async with in_process_sandbox(certs_dir, faults={"activation_delay_ms": 100}) as sandbox:
        yield sandbox


async def call(
    sb: InProcessSandbox, method: str, path: str, *, json: Any = None, client: str = ONBOARDING_APP
) -> tuple[int, Any]:
    token = await sb.token(client)
    headers = {"Authorization": f"Bearer {token}"}
    async with sb.session.request(
        method, f"{sb.graph_url}{path}", json=json, headers=headers
    ) as resp:
        body = await resp.json() if resp.content_length != 0 and resp.status != 204 else None
        return resp.status, body


def filt(expr: str) -> str:
    return quote(expr, safe="")


def templates(expr: str) -> str:
    return f"/applicationTemplates?$filter={filt(expr)}"


async def instantiate(sb: InProcessSandbox, name: str, template: str = SERVICENOW) -> str:
    status, body = await call(
        sb, "POST", f"/applicationTemplates/{template}/instantiate", json={"displayName": name}
    )
    assert status == 201, body
    assert body["servicePrincipal"]["applicationTemplateId"] == template
    assert body["application"]["displayName"] == name
    return str(body["servicePrincipal"]["id"])


async def test_templates_filter_on_display_name_with_quotes(sb: InProcessSandbox) -> None:
    status, body = await call(sb, "GET", templates("displayName eq 'ServiceNow'"))
    assert status == 200
    assert [t["id"] for t in body["value"]] == [SERVICENOW]
    assert body["value"][0]["supportedProvisioningTypes"] == ["sync"]
    status, body = await call(sb, "GET", templates("displayName eq 'Contoso Directory'"))
    assert len(body["value"]) == 2
    status, body = await call(sb, "GET", templates("displayName eq 'O''Neil'"))
    assert status == 200
    assert body["value"] == []
    status, body = await call(sb, "GET", templates("contains(displayName, 'contoso')"))
    assert {t["displayName"] for t in body["value"]} == {"Contoso SCIM", "Contoso Directory"}
    status, body = await call(sb, "GET", templates("publisher eq 'x'"))
    assert status == 400
    assert body["error"]["code"] == "BadRequest"


async def test_instantiate_makes_a_principal_listed_by_template(sb: InProcessSandbox) -> None:
    sp = await instantiate(sb, "ServiceNow Finance")
    status, body = await call(sb, "GET", f"/servicePrincipals/{sp}")
    assert status == 200
    assert {r["id"] for r in body["appRoles"]} >= {USER_ROLE}
    expr = f"applicationTemplateId eq '{SERVICENOW}' and displayName eq 'ServiceNow Finance'"
    status, body = await call(sb, "GET", f"/servicePrincipals?$filter={filt(expr)}")
    assert [p["id"] for p in body["value"]] == [sp]
    status, body = await call(sb, "GET", f"/servicePrincipals/{sp}/synchronization/templates")
    assert [t["id"] for t in body["value"]] == ["serviceNow"]
    assert sb.ctx.state.stats_json()["gallery"]["instantiated"] == 1


async def test_instantiate_needs_an_application_permission(sb: InProcessSandbox) -> None:
    status, body = await call(
        sb, "POST", f"/applicationTemplates/{SERVICENOW}/instantiate",
        json={"displayName": "x"}, client=SYNC_ONLY_APP,
    )  # fmt: skip
    assert status == 403
    assert body["error"]["code"] == "Authorization_RequestDenied"
    status, body = await call(
        sb, "POST", f"/applicationTemplates/{SERVICENOW}/instantiate", json={}
    )
    assert status == 400
    status, _ = await call(
        sb, "POST", f"/applicationTemplates/{ZERO}/instantiate", json={"displayName": "x"}
    )
    assert status == 404


async def test_new_principal_lags_and_lost_answers_still_make_the_app(
    sb: InProcessSandbox,
) -> None:
    # Lags that the three reads right after the instantiate fall inside on a loaded machine too.
    sb.ctx.engine.profile = sb.ctx.engine.profile.merged(
        {"gallery": {"lost_instantiate_rate": 1.0, "new_principal_lag_ms": 3000,
                     "principal_list_lag_ms": 2000}}
    )  # fmt: skip
    token = await sb.token(ONBOARDING_APP)
    url = f"{sb.graph_url}/applicationTemplates/{SERVICENOW}/instantiate"
    with pytest.raises(aiohttp.ClientError):  # the connection is dropped
        async with sb.session.post(
            url, json={"displayName": "Lost"}, headers={"Authorization": f"Bearer {token}"}
        ) as resp:
            await resp.read()
    [app] = sb.ctx.state.stats_json()["gallery"]["apps"]
    expr = f"applicationTemplateId eq '{SERVICENOW}'"
    status, body = await call(sb, "GET", f"/servicePrincipals?$filter={filt(expr)}")
    assert body["value"] == []  # not listed yet
    status, body = await call(sb, "GET", f"/servicePrincipals/{app['id']}")
    assert status == 404
    status, body = await call(sb, "GET", f"/servicePrincipals/{app['id']}/synchronization/jobs")
    assert status == 401
    assert body["error"]["code"] == "UnknownError"
    async with asyncio.timeout(30):  # only against a hang: the lags end
        while (await call(sb, "GET", f"/servicePrincipals/{app['id']}"))[0] != 200:
            await asyncio.sleep(0.1)
    status, body = await call(sb, "GET", f"/servicePrincipals?$filter={filt(expr)}")
    assert [p["id"] for p in body["value"]] == [app["id"]]


async def test_instantiate_5xx_after_the_app_was_made(sb: InProcessSandbox) -> None:
    sb.ctx.engine.profile = sb.ctx.engine.profile.merged({"gallery": {"instantiate_5xx_rate": 1.0}})
    status, _body = await call(
        sb, "POST", f"/applicationTemplates/{SERVICENOW}/instantiate", json={"displayName": "x"}
    )
    assert status in (500, 503)
    assert sb.ctx.state.stats_json()["gallery"]["instantiated"] == 1


async def test_assignments_duplicate_refused_and_roles_checked(sb: InProcessSandbox) -> None:
    sp = await instantiate(sb, "Assign me")
    body = {"principalId": GROUP, "resourceId": sp, "appRoleId": USER_ROLE}
    status, made = await call(sb, "POST", f"/servicePrincipals/{sp}/appRoleAssignedTo", json=body)
    assert status == 201
    assert made["principalId"] == GROUP
    assert made["id"]
    status, err = await call(sb, "POST", f"/servicePrincipals/{sp}/appRoleAssignedTo", json=body)
    assert status == 400
    assert err["error"]["message"] == "Permission being assigned already exists on the object"
    zero = {**body, "appRoleId": ZERO}
    status, err = await call(sb, "POST", f"/servicePrincipals/{sp}/appRoleAssignedTo", json=zero)
    assert status == 400
    assert "was not found on application" in err["error"]["message"]
    status, listed = await call(sb, "GET", f"/servicePrincipals/{sp}/appRoleAssignedTo")
    assert [(a["principalId"], a["appRoleId"]) for a in listed["value"]] == [(GROUP, USER_ROLE)]
    status, err = await call(
        sb, "POST", f"/servicePrincipals/{sp}/appRoleAssignedTo", json=body, client=SYNC_ONLY_APP
    )
    assert status == 403
    # AppRoleAssignment.ReadWrite.All alone is not enough: Graph's table pairs it with
    # Application.Read.All or Directory.Read.All.
    other = {**body, "principalId": "1a1b2c3d-0000-4000-8000-000000000002"}
    for roles, expected in [
        (["AppRoleAssignment.ReadWrite.All", "Synchronization.ReadWrite.All"], 403),
        (["AppRoleAssignment.ReadWrite.All", "Application.Read.All"], 201),
    ]:
        sb.ctx.engine.profile = sb.ctx.engine.profile.merged({"token_roles": roles})
        status, err = await call(
            sb, "POST", f"/servicePrincipals/{sp}/appRoleAssignedTo", json=other
        )
        assert status == expected, (roles, err)
    sb.ctx.engine.profile = sb.ctx.engine.profile.merged({"token_roles": None})
    # An app declaring no roles takes the default access role.
    plain = await instantiate(sb, "Plain", SCIM_APP)
    zero = {"principalId": GROUP, "resourceId": plain, "appRoleId": ZERO}
    status, _ = await call(sb, "POST", f"/servicePrincipals/{plain}/appRoleAssignedTo", json=zero)
    assert status == 201


async def test_schema_get_put_validates_targets(sb: InProcessSandbox) -> None:
    sp = await instantiate(sb, "Schema app")
    status, job = await call(
        sb,
        "POST",
        f"/servicePrincipals/{sp}/synchronization/jobs",
        json={"templateId": "serviceNow"},
    )
    assert status == 201
    base = f"/servicePrincipals/{sp}/synchronization/jobs/{job['id']}/schema"
    status, schema = await call(sb, "GET", base)
    assert status == 200
    [rule] = schema["synchronizationRules"]
    users = next(m for m in rule["objectMappings"] if m["targetObjectName"] == "User")
    users["attributeMappings"].append(
        {"targetAttributeName": "costCenter", "source": {"expression": "[department]",
         "name": "department", "parameters": [], "type": "Attribute"}}
    )  # fmt: skip
    schema.pop("@odata.context")
    status, _ = await call(sb, "PUT", base, json=schema)
    assert status == 204
    status, again = await call(sb, "GET", base)
    assert any(
        a["targetAttributeName"] == "costCenter"
        for m in again["synchronizationRules"][0]["objectMappings"]
        for a in m["attributeMappings"]
    )
    users["attributeMappings"].append({"targetAttributeName": "shoeSize", "source": None})
    status, err = await call(sb, "PUT", base, json=schema)
    assert status == 400
    assert "shoeSize" in err["error"]["message"]
    users["attributeMappings"].pop()
    users["targetObjectName"] = "Robot"
    status, err = await call(sb, "PUT", base, json=schema)
    assert status == 400
    assert "Robot" in err["error"]["message"]
    assert sb.ctx.state.stats_json()["gallery"]["schemaPuts"] == {job["id"]: 1}
