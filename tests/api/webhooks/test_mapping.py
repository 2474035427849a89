"""Issue 12: a webhook mapping can carry the request's ``action`` (a field or a default)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from service.api.webhooks.mapping import map_payload
from service.api.webhooks.sources import load_webhook_sources
from service.core.request import ProvisionRequest

SP = "cbe29441-8636-4563-a4a8-c390c0e83cb4"


def sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **defaults: str):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("LIFECYCLE_HOOK_SECRET", "whsec_bGlmZWN5Y2xlLWhvb2stc2VjcmV0LTAxMjM0NQ==")
    conf = {
        "sources": {
            "ops": {
                "kind": "standard",
                "secret_env": ["LIFECYCLE_HOOK_SECRET"],
                "mapping": {"servicePrincipalId": "data.sp", "action": "data.action"},
                "defaults": defaults,
            }
        }
    }
    path = tmp_path / "webhooks.yaml"
    path.write_text(yaml.safe_dump(conf))
    return load_webhook_sources(path)


def test_a_mapped_action_reaches_the_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = sources(tmp_path, monkeypatch)
    mapped = map_payload(config.sources["ops"], {"data": {"sp": SP, "action": "pause"}}, config)
    assert mapped.body == {"servicePrincipalId": SP, "action": "pause"}
    assert ProvisionRequest.model_validate(mapped.body).action == "pause"


def test_the_default_action_applies_and_a_bad_one_is_refused_by_intake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = sources(tmp_path, monkeypatch, action="deprovision")
    mapped = map_payload(config.sources["ops"], {"data": {"sp": SP}}, config)
    assert mapped.body["action"] == "deprovision"
    bad = map_payload(config.sources["ops"], {"data": {"sp": SP, "action": "explode"}}, config)
    with pytest.raises(ValidationError) as e:
        ProvisionRequest.model_validate(bad.body)
    assert e.value.errors()[0]["loc"] == ("action",)


def test_no_action_means_provision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = sources(tmp_path, monkeypatch)
    mapped = map_payload(config.sources["ops"], {"data": {"sp": SP}}, config)
    assert "action" not in mapped.body
    assert ProvisionRequest.model_validate(mapped.body).action == "provision"
