"""Credentials at rest: Fernet tokens under rotating keys, and the keyed body fingerprint."""

from __future__ import annotations

import pytest

from service.core.crypto import CredentialCipher, new_encryption_key
from service.core.errors import ConfigError, ProvisionerError
from service.core.request import Credential

PAIRS = [Credential(key="SecretToken", value="s3cret-value")]  # type: ignore[arg-type]


def _plain(credentials: list[Credential]) -> list[tuple[str, str]]:
    return [(c.key, c.value.get_secret_value()) for c in credentials]


def test_credentials_round_trip_and_the_token_hides_the_value() -> None:
    cipher = CredentialCipher((new_encryption_key(),))
    token = cipher.encrypt(PAIRS)
    assert b"s3cret-value" not in token
    assert _plain(cipher.decrypt(token)) == [("SecretToken", "s3cret-value")]


def test_after_a_rotation_old_tokens_still_open_and_new_ones_use_the_new_key() -> None:
    old, new = new_encryption_key(), new_encryption_key()
    before = CredentialCipher((old,)).encrypt(PAIRS)
    rotated = CredentialCipher((new, old))
    assert _plain(rotated.decrypt(before)) == [("SecretToken", "s3cret-value")]
    after = rotated.encrypt(PAIRS)
    with pytest.raises(ProvisionerError, match="cannot be decrypted"):
        CredentialCipher((old,)).decrypt(after)


@pytest.mark.parametrize("key", ["", "short", "x" * 44])
def test_a_bad_key_names_the_variable(key: str) -> None:
    with pytest.raises(ConfigError, match="PROVISIONER_ENCRYPTION_KEY"):
        CredentialCipher((key,))


def test_the_fingerprint_mac_is_keyed_by_the_first_key() -> None:
    one, two = new_encryption_key(), new_encryption_key()
    mac = CredentialCipher((one, two)).mac(b"body")
    assert mac == CredentialCipher((one,)).mac(b"body")
    assert mac != CredentialCipher((two, one)).mac(b"body")
    assert len(mac) == 64
