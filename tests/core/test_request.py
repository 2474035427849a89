"""The request body: defaults, camelCase wire names, limits, and secret values kept hidden."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from service.core.request import Credential, ProvisionRequest
from service.core.text import SECRET_KEYS

SP = "6F1C3B9E-2A4D-4C8E-9B1F-0D2E3F4A5B6C"


def parse(**body: object) -> ProvisionRequest:
    return ProvisionRequest.model_validate_json(json.dumps({"servicePrincipalId": SP, **body}))


def test_defaults_and_guid_normalisation() -> None:
    req = parse()
    assert req.service_principal_id == SP.lower()
    assert req.start is True
    assert req.template_id is None
    assert req.credentials is None
    assert req.metadata == {}


def test_wire_names_are_camel_case_only() -> None:
    with pytest.raises(ValidationError) as info:
        ProvisionRequest.model_validate_json(json.dumps({"service_principal_id": SP}))
    kinds = {(e["loc"], e["type"]) for e in info.value.errors()}
    assert (("servicePrincipalId",), "missing") in kinds
    assert (("service_principal_id",), "extra_forbidden") in kinds


@pytest.mark.parametrize(
    "body",
    [
        {"start": "true"},
        {"start": 1},
        {"templateId": 5},
        {"templateId": "-leading-dash"},
        {"templateId": "a" * 129},
        {"callbackUrl": "https://"},
        {"callbackUrl": "javascript:alert(1)"},
        {"externalReference": ""},
        {"metadata": {"k" * 65: "v"}},
        {"metadata": {f"k{i}": "v" for i in range(21)}},
        {"metadata": {"k": "v" * 257}},
        {"credentials": [{"key": "UserName", "value": "1"}, {"key": "UserName", "value": "2"}]},
        {"credentials": [{"key": "Password", "value": "x" * 8193}]},
        {"credentials": [{"key": "Password"}]},
        # resume and restart are verified like a start: "start": false would skip verify
        {"action": "resume", "start": False},
        {"action": "restart", "start": False},
        {"action": "pause", "start": False},
    ],
)
def test_rejected_bodies(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        parse(**body)


def test_accepted_limits() -> None:
    req = parse(
        templateId="a" * 128,
        callbackUrl="https://portal.example/cb?x=1",
        credentials=[{"key": k, "value": "v"} for k in SECRET_KEYS[:20]],
        metadata={f"k{i}": "v" * 256 for i in range(20)},
    )
    assert req.credentials is not None
    assert len(req.credentials) == 20


def test_secret_values_stay_hidden_but_fingerprint_sees_them() -> None:
    req = parse(credentials=[{"key": "SecretToken", "value": "s3cret"}])
    assert "s3cret" not in repr(req)
    assert "s3cret" not in req.model_dump_json()
    assert req.fingerprint_payload()["credentials"] == [{"key": "SecretToken", "value": "s3cret"}]
    other = parse(credentials=[{"key": "SecretToken", "value": "other"}])
    assert req.fingerprint_payload() != other.fingerprint_payload()


def test_credential_model_is_strict() -> None:
    with pytest.raises(ValidationError):
        Credential.model_validate({"key": "UserName", "value": "b", "extra": 1})
