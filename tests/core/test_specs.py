"""The onboarding parts of a request: each bad field named with its reason."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from service.core.request import ProvisionRequest

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
