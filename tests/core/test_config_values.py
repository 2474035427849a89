"""service/core/config_values.py: the parsers of list and secret settings."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from service.core.config_values import (
    ApiKey,
    hash_api_key,
    https_url,
    parse_api_keys,
    parse_callback_secrets,
    read_api_keys_file,
    split_list,
)

WHSEC = "whsec_" + base64.b64encode(b"0123456789abcdef0123").decode()


def test_api_keys_inline_and_from_a_file(tmp_path: Path) -> None:
    digest = hash_api_key("pk_one")
    assert parse_api_keys(f" portal:{digest.upper()} ,, ") == (ApiKey("portal", digest),)
    keys = tmp_path / "keys"
    keys.write_text(f"# callers\nportal:{digest}  # the portal\n\nops:{hash_api_key('pk_2')}\n")
    assert [k.name for k in read_api_keys_file(keys)] == ["portal", "ops"]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [("portal", "is not NAME:sha256hex"), ("portal:abc", "64-character"), (3, "comma-separated")],
)
def test_a_bad_api_key_entry_says_why(raw: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_api_keys(raw)


def test_an_unreadable_keys_file_names_the_error_type(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="FileNotFoundError"):
        read_api_keys_file(tmp_path / "missing")


def test_callback_secrets_split_at_the_last_colon_or_from_json() -> None:
    pairs = parse_callback_secrets(f"webhook:standard:{WHSEC}, portal:{WHSEC}")
    assert [p.name for p in pairs] == ["webhook:standard", "portal"]
    assert WHSEC not in repr(pairs)
    assert [p.name for p in parse_callback_secrets(f'{{"entra:app": "{WHSEC}"}}')] == ["entra:app"]


@pytest.mark.parametrize(
    "raw",
    ["portal:not-a-secret", "portal:whsec_c2hvcnQ=", '{"portal": 3}', "{not json"],
)
def test_a_bad_callback_secret_never_echoes_it(raw: str) -> None:
    with pytest.raises(ValueError, match=r"whsec_|JSON object") as info:
        parse_callback_secrets(raw)
    assert "c2hvcnQ" not in str(info.value)
    assert "not-a-secret" not in str(info.value)


def test_lists_and_https_urls() -> None:
    assert split_list(" a, ,b ,") == ("a", "b")
    assert split_list(["x", 1]) == ("x", "1")
    assert https_url("https://login.example/", "the host") == "https://login.example"
    with pytest.raises(ValueError, match="the host must be an https:// URL"):
        https_url("http://login.example", "the host")
