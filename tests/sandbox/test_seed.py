"""Seed loading: the default seed's documented ids, YAML and generated principals, bad input."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError

from sandbox.seed import generated_principal_id, load_seed
from tests.helpers.harness import GITHUB, SALESFORCE, SCIM, SLACK_NEW, TENANT


def test_default_seed_has_documented_ids() -> None:
    seed = load_seed()
    assert seed.tenantId == TENANT
    by_id = {p.id: p for p in seed.servicePrincipals}
    assert [t.id for t in by_id[SALESFORCE].templates] == ["salesforce"]
    assert [(t.id, t.default) for t in by_id[SCIM].templates] == [
        ("scim", False),
        ("scimV2", True),
    ]
    assert not any(t.default for t in by_id[GITHUB].templates)
    assert len(by_id[GITHUB].templates) == 2
    assert by_id[SLACK_NEW].newForMs == 3000
    roles = {a.clientId: a.roles for a in seed.applications}
    assert roles["e2ae45db-2954-4e51-a7e6-3f3a57ae4b50"] == ["Synchronization.Read.All"]
    assert [a.certificate for a in seed.applications].count("generated") == 1


def test_seed_from_yaml_and_generated_principals(tmp_path: Path) -> None:
    path = tmp_path / "seed.yaml"
    path.write_text(
        f"tenantId: {TENANT}\n"
        "applications: [{clientId: 7d9c0e36-5c1f-4f57-8d0c-0f2f5d1f0b11, clientSecret: s}]\n"
        "generate: {count: 60}\n"
    )
    seed = load_seed(path)
    principals = seed.all_principals()
    assert len(principals) == 60
    assert principals[7].id == str(uuid.uuid5(uuid.UUID(TENANT), "generated-principal-7"))
    assert principals[7].id == generated_principal_id(TENANT, 7)
    assert principals[0].templates[0].id == "scim"


def test_seed_rejects_bad_input() -> None:
    with pytest.raises(ValidationError):
        load_seed({"tenantId": "not-a-guid"})
    with pytest.raises(ValidationError):
        load_seed(
            {
                "tenantId": TENANT,
                "servicePrincipals": [
                    {
                        "id": SCIM,
                        "templates": [{"id": "a", "default": True}, {"id": "b", "default": True}],
                    }
                ],
            }
        )
