"""The field types and base classes of the wire models (:mod:`service.core.models`,
:mod:`service.core.specs`): GUIDs in canonical form, safe ids, plain text a person reads,
synchronization secret names, display names; camelCase on the wire, snake_case in Python.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    StringConstraints,
    WithJsonSchema,
)
from pydantic.alias_generators import to_camel

from service.core.text import (
    GUID_PATTERN,
    SECRET_KEYS,
    canonical_guid,
    check_plain_text,
    check_secret_key,
)

__all__ = [
    "DEFAULT_APP_ROLE",
    "DisplayName",
    "Guid",
    "PlainText",
    "SafeId",
    "SecretKey",
    "Strict",
    "Wire",
    "https_only",
    "utcnow",
]


_SAFE_ID = r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$"


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (every stored timestamp uses it)."""
    return datetime.now(UTC)


def https_only(value: str) -> str:
    """``value`` when it is an https:// URL with a host (a field validator)."""
    if not re.match(r"^https://[^/\s?#]+", value):
        raise ValueError("must be an https:// URL")
    return value


Guid = Annotated[
    str,
    StringConstraints(strict=True),
    AfterValidator(canonical_guid),
    WithJsonSchema({"type": "string", "format": "uuid", "pattern": GUID_PATTERN}),
]
SafeId = Annotated[str, StringConstraints(strict=True, pattern=_SAFE_ID)]
#: Free text a person reads (ticket ids, metadata): no control or bidi characters.
PlainText = Annotated[str, AfterValidator(check_plain_text)]
SecretKey = Annotated[
    str,
    StringConstraints(strict=True),
    AfterValidator(check_secret_key),
    WithJsonSchema(
        {
            "type": "string",
            "enum": list(SECRET_KEYS),
            "description": "A synchronizationSecret name as Graph documents it (case-sensitive).",
        }
    ),
]


class Wire(BaseModel):
    """camelCase on the wire, snake_case in Python; either name accepted when parsing."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


_NAME = r"^[^\x00-\x1f\x7f]*\S[^\x00-\x1f\x7f]*$"  # printable, not blank
DisplayName = Annotated[str, StringConstraints(strict=True, max_length=256, pattern=_NAME)]
DEFAULT_APP_ROLE = "00000000-0000-0000-0000-000000000000"  # "no specific app role" (Graph)


class Strict(Wire):
    """A body part the caller sends: only the camelCase names, no unknown fields, no coercion."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=False, extra="forbid", strict=True
    )
