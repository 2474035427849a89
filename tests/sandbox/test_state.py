"""The pure tenant state: secrets masked, rejected and checked."""

from __future__ import annotations

import pytest

from sandbox.models import GraphError
from sandbox.seed import load_seed
from sandbox.state import TenantState
from tests.helpers.harness import SCIM
from tests.helpers.sandbox import Clock


def test_secrets_masking_reject_and_bad_keys() -> None:
    state = TenantState(load_seed(), clock=Clock())
    state.save_secrets(SCIM, [("BaseAddress", "https://a"), ("SecretToken", "abc")])
    assert state.get_secrets(SCIM) == [
        {"key": "BaseAddress", "value": "https://a"},
        {"key": "SecretToken", "value": "*"},
    ]
    state.save_secrets(SCIM, [("SecretToken", "")])  # empty value deletes (as Terraform does)
    assert [s["key"] for s in state.get_secrets(SCIM)] == ["BaseAddress"]
    with pytest.raises(GraphError):
        state.validate_credentials(SCIM, [("SecretToken", "sandbox:reject")], use_saved=False)
    with pytest.raises(GraphError):
        state.save_secrets(SCIM, [("NotAKey", "x")])
    assert state.stats.secrets[SCIM] == 2
