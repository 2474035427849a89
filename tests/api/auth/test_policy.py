"""Per-caller authorization from a real policy file: permissions by key and by token roles, the
targets a caller may provision (ids, tags, templates), and what start-up refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.api.auth.policy import Permission, default_policy, load_access_policy

HR = "6f1c3b9e-2a4d-4c8e-9b1f-0d2e3f4a5b6c"
SALESFORCE = "15331f0e-bdc6-41e2-afa0-a4c9abfe90b3"
OTHER = "0b5e2c7a-1111-4222-8333-944455556666"
PORTAL_APP = "3d9e8f7a-6b5c-4d3e-2f1a-0b9c8d7e6f5a"
POLICY = f"""
roles:
  Provisioning.ReadWrite.All: [read, write]
  Provisioning.Read.All: [read]
tags:
  hr-apps: [{HR.upper()}]
callers:
  portal:
    app_ids: [{PORTAL_APP.upper()}]
    permissions: [read, write]
    service_principals: ["tag:hr-apps", {SALESFORCE}]
    templates: [scim]
  support: {{permissions: [read, write, operator]}}
default: null
"""


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return path


def test_permissions_by_key_and_narrowed_by_token_roles(policy_file: Path) -> None:
    policy = load_access_policy(policy_file)
    assert policy.permissions("portal", None) == {Permission.READ, Permission.WRITE}
    assert policy.permissions("portal", ["Provisioning.Read.All"]) == {Permission.READ}
    assert policy.permissions("portal", ["Unrelated.Role"]) == frozenset()
    assert policy.permissions("stranger", None) == frozenset()  # default: null
    assert policy.is_operator("support", None)
    assert not policy.is_operator(
        "support", ["Provisioning.ReadWrite.All"]
    )  # roles grant no operator


def test_an_entra_app_id_names_its_caller_whatever_its_case(policy_file: Path) -> None:
    policy = load_access_policy(policy_file)
    assert policy.caller_for_app(PORTAL_APP) == "portal"
    assert policy.caller_for_app(OTHER) is None


def test_targets_by_id_tag_and_template(policy_file: Path) -> None:
    policy = load_access_policy(policy_file)
    assert policy.target_allowed("portal", HR, "scim") is None  # through the tag
    assert policy.target_allowed("portal", SALESFORCE.upper(), "scim") is None
    assert policy.target_allowed("portal", OTHER, "scim") == (
        "this caller may not provision this service principal"
    )
    assert (
        policy.target_allowed("portal", HR, "salesforce") == "this caller may not use this template"
    )
    assert "must name a templateId" in (policy.target_allowed("portal", HR, None) or "")
    assert policy.target_allowed("stranger", HR, None) == "this caller has no rights"
    assert (
        policy.target_allowed("support", OTHER, None) is None
    )  # defaults: any principal, any template


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("callers: {a: {service_principals: ['tag:nope']}}", "unknown tag"),
        ("tags: {t: [not-a-guid]}", "must list service principal GUIDs"),
        ("callers: {a: {permissions: [admin]}}", "permissions"),
        ("colour: red", "colour"),
    ],
)
def test_a_bad_policy_stops_start_up_naming_the_problem(
    tmp_path: Path, text: str, says: str
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=says):
        load_access_policy(path)


def test_without_a_file_every_caller_may_read_and_write_anything() -> None:
    policy = load_access_policy(None)
    assert policy == default_policy()
    assert policy.permissions("anyone", None) == {Permission.READ, Permission.WRITE}
    assert policy.target_allowed("anyone", OTHER, None) is None
