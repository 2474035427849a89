"""What intake accepts as text: canonical GUIDs, no control characters, Graph's secret key names.

- A GUID has one form: 8-4-4-4-12 ASCII hex digits with dashes (either case on input, always
  lowercase stored and returned). Braces, ``urn:uuid:``, no dashes and non-ASCII digits (such
  as full-width ones, which :class:`uuid.UUID` would accept) are refused.
- Free text (``externalReference``, ``metadata`` keys and values) may not hold C0 or C1 control
  characters (NUL, BEL, ESC, DEL, ...), line or paragraph separators, or bidirectional
  overrides and isolates (U+202A-U+202E, U+2066-U+2069, and the LRM/RLM/ALM marks).
- A credential key is one of the ``synchronizationSecret`` names Graph documents
  (``synchronizationSecretKeyStringValuePair``), exact and case-sensitive; ``None``, the
  enum's null member, is not a key.
"""

from __future__ import annotations

import difflib
import re
import unicodedata

__all__ = [
    "SECRET_KEYS",
    "canonical_guid",
    "check_plain_text",
    "check_secret_key",
]

GUID_PATTERN = r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"
_GUID = re.compile(GUID_PATTERN, re.ASCII)
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_SEPARATORS = frozenset("\u2028\u2029")

SECRET_KEYS: tuple[str, ...] = (
    "UserName", "Password", "SecretToken", "AppKey", "BaseAddress", "ClientIdentifier",
    "ClientSecret", "SingleSignOnType", "Sandbox", "Url", "Domain", "ConsumerKey",
    "ConsumerSecret", "TokenKey", "TokenExpiration", "Oauth2AccessToken",
    "Oauth2AccessTokenCreationTime", "Oauth2RefreshToken", "SyncAll", "InstanceName",
    "Oauth2ClientId", "Oauth2ClientSecret", "CompanyId", "UpdateKeyOnSoftDelete",
    "SynchronizationSchedule", "SystemOfRecord", "SandboxName", "EnforceDomain",
    "SyncNotificationSettings", "SkipOutOfScopeDeletions", "Oauth2AuthorizationCode",
    "Oauth2RedirectUri", "ApplicationTemplateIdentifier", "Oauth2TokenExchangeUri",
    "Oauth2AuthorizationUri", "AuthenticationType", "Server", "PerformInboundEntitlementGrants",
    "HardDeletesEnabled", "SyncAgentCompatibilityKey", "SyncAgentADContainer", "ValidateDomain",
    "TestReferences", "ConnectionString",
)  # fmt: skip
_SECRET_KEYS = frozenset(SECRET_KEYS)
_BY_LOWER = {k.lower(): k for k in SECRET_KEYS}


def canonical_guid(value: str) -> str:
    """The GUID in lowercase; ValueError for any other form."""
    if not _GUID.match(value):
        raise ValueError(
            "must be a GUID in the form 00000000-0000-0000-0000-000000000000 "
            "(ASCII hex digits and dashes; no braces or urn:uuid: prefix)"
        )
    return value.lower()


def forbidden_character(value: str) -> str | None:
    """The first refused character of ``value`` as ``U+XXXX``, or None when it is clean."""
    for char in value:
        if unicodedata.category(char) == "Cc" or char in _BIDI or char in _SEPARATORS:
            return f"U+{ord(char):04X}"
    return None


def check_plain_text(value: str) -> str:
    """``value`` unchanged; ValueError when it holds a control or bidi character."""
    bad = forbidden_character(value)
    if bad is not None:
        raise ValueError(f"must not contain control or bidirectional characters (found {bad})")
    return value


def check_secret_key(key: str) -> str:
    """``key`` unchanged when Graph documents it; else ValueError naming near matches."""
    if key in _SECRET_KEYS:
        return key
    hints = [_BY_LOWER[key.lower()]] if key.lower() in _BY_LOWER else []
    hints += [m for m in difflib.get_close_matches(key, SECRET_KEYS, n=3) if m not in hints]
    hint = f"; did you mean {' or '.join(repr(h) for h in hints)}?" if hints else ""
    # Never quoted back: a secret pasted into the wrong field must not be echoed.
    raise ValueError(f"is not a synchronizationSecret name Graph documents{hint}")
