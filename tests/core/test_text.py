"""What intake accepts as text: GUIDs in one form, no control or bidi characters, and only the
secret names Graph documents (with a hint that never echoes the value)."""

from __future__ import annotations

import pytest

from service.core.text import (
    canonical_guid,
    check_plain_text,
    check_secret_key,
    forbidden_character,
)


def test_a_guid_is_lowercased_and_other_forms_are_refused() -> None:
    assert canonical_guid("15331F0E-BDC6-41E2-AFA0-A4C9ABFE90B3") == (
        "15331f0e-bdc6-41e2-afa0-a4c9abfe90b3"
    )
    for other in (
        "{15331f0e-bdc6-41e2-afa0-a4c9abfe90b3}",
        "urn:uuid:15331f0e-bdc6-41e2-afa0-a4c9abfe90b3",
        "15331f0ebdc641e2afa0a4c9abfe90b3",
        "15331f0e-bdc6-41e2-afa0-a4c9abfe90b\uff13",  # a full-width digit
    ):
        with pytest.raises(ValueError, match="must be a GUID"):
            canonical_guid(other)


@pytest.mark.parametrize(
    ("text", "found"),
    [("plain text, ünïcode ok", None), ("a\x00b", "U+0000"), ("x\u202ey", "U+202E"),
     ("line\u2028sep", "U+2028"), ("tab\there", "U+0009")],
)  # fmt: skip
def test_the_first_refused_character_is_named(text: str, found: str | None) -> None:
    assert forbidden_character(text) == found
    if found is None:
        assert check_plain_text(text) == text
    else:
        with pytest.raises(ValueError, match=found.replace("+", r"\+")):
            check_plain_text(text)


def test_documented_secret_names_pass_and_near_misses_get_a_hint() -> None:
    assert check_secret_key("SecretToken") == "SecretToken"
    with pytest.raises(ValueError, match="did you mean 'SecretToken'") as info:
        check_secret_key("secrettoken")
    assert "secrettoken" not in str(info.value)
    with pytest.raises(ValueError, match=r"Graph documents$"):
        check_secret_key("hunter2-my-password")
