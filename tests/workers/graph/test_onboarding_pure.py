"""The pure parts of onboarding: the schema edit, the default user role, OData quoting and the
request's onboarding fields."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from sandbox import schema as sandbox_schema
from service.core.request import ProvisionRequest
from service.core.specs import AttributeMappingSpec
from workers.graph.apps import DEFAULT_ACCESS_ROLE, AppRole, default_user_role, odata_string
from workers.graph.schema import SchemaDocument, SynchronizationSchema, apply_mappings

USERS = "Provision Microsoft Entra ID Users"
TARGETS = {"User": ["userName", "active", "email", "title", "costCenter"], "Group": ["displayName"]}


def doc() -> SchemaDocument:
    raw = sandbox_schema.build("scim.x.y", "Target", TARGETS)
    return SchemaDocument(raw, SynchronizationSchema.model_validate(raw))


def spec(**kw: Any) -> AttributeMappingSpec:
    return AttributeMappingSpec.model_validate(
        {"objectMapping": USERS, **{k: v for k, v in kw.items()}}
    )


def test_apply_changes_only_the_named_mappings_and_is_idempotent() -> None:
    before = doc()
    specs = [
        spec(target="costCenter", source="department"),
        spec(target="email", source='Join("@", [mailNickname], "contoso.com")'),
        spec(target="title", remove=True),
    ]
    edit = apply_mappings(before, specs)
    assert edit.changed == [
        f"added {USERS}.costCenter",
        f"set {USERS}.email",
        f"removed {USERS}.title",
    ]
    users = edit.raw["synchronizationRules"][0]["objectMappings"][0]["attributeMappings"]
    by_target = {m["targetAttributeName"]: m for m in users}
    assert by_target["costCenter"]["source"]["type"] == "Attribute"
    assert by_target["email"]["source"]["type"] == "Function"
    assert "title" not in by_target
    assert by_target["userName"] == next(
        m
        for m in before.raw["synchronizationRules"][0]["objectMappings"][0]["attributeMappings"]
        if m["targetAttributeName"] == "userName"
    )
    sandbox_schema.validate(before.raw, edit.raw)  # the sandbox accepts it
    after = SchemaDocument(edit.raw, SynchronizationSchema.model_validate(edit.raw))
    assert apply_mappings(after, specs).changed == []  # nothing left to do: no PUT


def test_unknown_object_mapping_is_reported() -> None:
    edit = apply_mappings(doc(), [spec(objectMapping="Robots", target="x", source="y")])
    assert edit.missing == ["Robots"]
    assert edit.changed == []


def test_default_user_role() -> None:
    user = AppRole(id="u", display_name="User", allowed_member_types=["User"])
    msiam = AppRole(id="m", display_name="msiam_access", allowed_member_types=["User"])
    other = AppRole(id="o", display_name="Admin", allowed_member_types=["User"])
    assert default_user_role([]) == DEFAULT_ACCESS_ROLE
    assert default_user_role([msiam]) == "m"
    assert default_user_role([user, msiam]) == "u"
    assert default_user_role([msiam, other]) is None


def test_odata_string_doubles_quotes() -> None:
    assert odata_string("O'Neil's app") == "'O''Neil''s app'"


SP = "15331f0e-bdc6-41e2-afa0-a4c9abfe90b3"
APP = {"applicationTemplateId": "6f3b2a4e-1c55-4a8e-9b1e-5d2c8f7a9e01", "displayName": "X"}


def errors(body: dict[str, Any]) -> set[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        ProvisionRequest.model_validate_json(json.dumps(body))
    return {
        (".".join(map(str, e["loc"])), e["msg"].removeprefix("Value error, "))
        for e in info.value.errors()
    }


def test_request_onboarding_fields_are_validated_with_their_field() -> None:
    ok = ProvisionRequest.model_validate_json(json.dumps({"application": APP, "scope": "all"}))
    assert ok.service_principal_id is None
    assert ok.application is not None
    assert ("application", "cannot be combined with servicePrincipalId") in errors(
        {"servicePrincipalId": SP, "application": APP}
    )
    assert ("servicePrincipalId", "Field required") in errors({"start": True, "x": 1})
    assert ("application", "name exactly one of applicationTemplateId and galleryName") in errors(
        {"application": {"displayName": "X"}}
    )
    assert ("attributeMappings.0", 'give either "source" or "remove": true') in errors(
        {"servicePrincipalId": SP, "attributeMappings": [{"objectMapping": "a", "target": "b"}]}
    )
    dup = {"principalId": SP}
    assert ("assignments", "names the same principalId and appRoleId twice") in errors(
        {"servicePrincipalId": SP, "assignments": [dup, dup]}
    )
    assert ("credentials", "must not hold SyncAll when scope is given") in errors(
        {
            "servicePrincipalId": SP,
            "scope": "all",
            "credentials": [{"key": "SyncAll", "value": "true"}],
        }
    )
    assert {f for f, _ in errors({"application": {**APP, "displayName": "  "}})} == {
        "application.displayName"
    }
