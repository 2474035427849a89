"""The sandbox's synchronization vocabulary agrees with what intake accepts: the secret names and
the reset scopes a request may name are ones the stand-in for Graph takes, and an unknown key
is Graph's 400 naming it."""

from __future__ import annotations

import pytest

from sandbox.models import GraphError
from sandbox.vocabulary import RESET_SCOPES, SECRET_KEYS, SENSITIVE_KEYS, check_keys
from service.core.request import RESET_SCOPES as REQUESTABLE_SCOPES
from service.core.text import SECRET_KEYS as ACCEPTED_KEYS


def test_every_secret_name_intake_accepts_is_one_the_sandbox_takes() -> None:
    assert set(ACCEPTED_KEYS) <= SECRET_KEYS
    assert SENSITIVE_KEYS <= SECRET_KEYS


def test_every_reset_scope_a_request_may_name_is_one_the_sandbox_takes() -> None:
    assert set(REQUESTABLE_SCOPES) <= RESET_SCOPES
    assert {"None", "ConnectorDataStore"} & set(REQUESTABLE_SCOPES) == set()  # "DO NOT USE"


def test_unknown_keys_are_a_400_naming_them_once_and_sorted() -> None:
    check_keys(["SecretToken", "BaseAddress"])
    with pytest.raises(GraphError) as info:
        check_keys(["Zeta", "SecretToken", "Alpha", "Zeta"])
    assert info.value.status == 400
    assert info.value.message == "Invalid synchronizationSecret key(s): Alpha, Zeta."
