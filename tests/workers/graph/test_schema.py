"""A job's synchronization schema: the attribute-mapping edit, idempotent, and an unknown object
mapping reported."""

from __future__ import annotations

from typing import Any

from sandbox import schema as sandbox_schema
from service.core.specs import AttributeMappingSpec
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
