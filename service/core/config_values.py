"""The values of list-valued and secret settings, parsed: API keys (``NAME:sha256hex``, inline
or in a file), callback secrets (``CALLER:whsec_...`` or a JSON object), comma lists, the watch
schedule, files and https:// URLs (and whether one is Microsoft's authority).
:mod:`service.core.settings` validates its fields with these; the API's key ring reads its file
with :func:`read_api_keys_file`. Every problem is a ``ValueError`` whose message never holds a
secret.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

__all__ = [
    "ApiKey",
    "NamedSecret",
    "existing_file",
    "hash_api_key",
    "https_url",
    "microsoft_host",
    "parse_api_keys",
    "parse_callback_secrets",
    "parse_watch_schedule",
    "read_api_keys_file",
    "split_list",
]

_MICROSOFT_AUTHORITY_HOSTS = frozenset(
    {
        "login.microsoftonline.com",
        "login.microsoftonline.us",
        "login.chinacloudapi.cn",
        "login.partner.microsoftonline.cn",
    }
)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A caller's API key as configured: its name and the SHA-256 hex digest of the key."""

    name: str
    sha256: str


@dataclass(frozen=True, slots=True)
class NamedSecret:
    """A secret configured for a named party (its value is kept out of reprs and logs)."""

    name: str
    value: str = field(repr=False)


def hash_api_key(key: str) -> str:
    """Return the SHA-256 hex digest under which an API key is configured and compared."""
    return hashlib.sha256(key.encode()).hexdigest()


def parse_api_keys(raw: object) -> tuple[ApiKey, ...]:
    """``NAME:sha256hex`` entries, comma-separated (or the keys themselves)."""
    if isinstance(raw, tuple | list):
        return tuple(raw)
    if not isinstance(raw, str):
        raise ValueError("expected a comma-separated list of NAME:sha256hex entries")
    keys: list[ApiKey] = []
    for entry in filter(None, (part.strip() for part in raw.split(","))):
        name, sep, digest = entry.partition(":")
        digest = digest.strip().lower()
        if not sep or not name.strip():
            raise ValueError(f"entry {entry[:40]!r} is not NAME:sha256hex")
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"entry for {name.strip()!r} needs a 64-character sha256 hex digest")
        keys.append(ApiKey(name=name.strip(), sha256=digest))
    return tuple(keys)


def read_api_keys_file(path: Path) -> tuple[ApiKey, ...]:
    """``NAME:sha256hex`` lines of an API keys file (``#`` comments and blank lines ignored)."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ValueError(f"cannot read {str(path)!r}: {type(e).__name__}") from None
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    return parse_api_keys(",".join(line for line in lines if line))


def _callback_secret_value(caller: str, secret: str) -> NamedSecret:
    if not caller or not secret.startswith("whsec_"):
        raise ValueError(
            "each entry must be CALLER:whsec_<base64 secret> (the caller may contain ':'), "
            'or give a JSON object {"CALLER": "whsec_..."}'
        )
    encoded = secret.removeprefix("whsec_")
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except ValueError:
        key = b""
    if len(key) < 16:
        raise ValueError(f"the secret for {caller[:60]!r} is not whsec_ and 16+ bytes of base64")
    return NamedSecret(name=caller, value=secret)


def parse_callback_secrets(raw: object) -> tuple[NamedSecret, ...]:
    """``CALLER:whsec_...`` entries, comma-separated, split at the last ``:`` (so callers such
    as ``webhook:standard`` or ``entra:<appid>`` work), or a JSON object ``{caller: secret}``."""
    if isinstance(raw, tuple | list):
        return tuple(raw)
    if not isinstance(raw, str):
        raise ValueError("expected a comma-separated list of CALLER:whsec_... entries")
    if raw.strip().startswith("{"):
        try:
            mapping = json.loads(raw)
        except ValueError:
            raise ValueError("is not a valid JSON object of caller -> whsec_ secret") from None
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
            raise ValueError("the JSON object must map caller names to whsec_ strings")
        return tuple(_callback_secret_value(k.strip(), v.strip()) for k, v in mapping.items())
    pairs: list[NamedSecret] = []
    for entry in filter(None, (part.strip() for part in raw.split(","))):
        caller, _, secret = entry.rpartition(":")
        pairs.append(_callback_secret_value(caller.strip(), secret.strip()))
    return tuple(pairs)


def split_list(raw: object) -> tuple[str, ...]:
    """A comma-separated list, its items stripped, the empty ones dropped."""
    if isinstance(raw, tuple | list):
        return tuple(str(v) for v in raw)
    if not isinstance(raw, str):
        raise ValueError("expected a comma-separated list")
    return tuple(v.strip() for v in raw.split(",") if v.strip())


def https_url(value: str, name: str) -> str:
    """``value`` without a trailing ``/`` when it is an https:// URL with a host."""
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"{name} must be an https:// URL, got {value!r}")
    return value.rstrip("/")


def microsoft_host(url: str) -> bool:
    """Whether ``url``'s host is one of Microsoft's own authority hosts."""
    return urlsplit(url).hostname in _MICROSOFT_AUTHORITY_HOSTS


def parse_watch_schedule(raw: object) -> tuple[int, ...]:
    """The health watch's delays: whole seconds, at least one, the first within a minute."""
    items = split_list(raw)
    try:
        delays = tuple(int(v) for v in items)
    except ValueError:
        raise ValueError("expected comma-separated whole seconds, e.g. 60,300,900") from None
    if not delays or any(d < 1 for d in delays):
        raise ValueError("needs at least one delay, each at least 1 second")
    if delays[0] > 60:
        raise ValueError("the first check must come within 60 s of a request's end")
    return delays


def existing_file(value: Path) -> Path:
    """``value`` when it names a file, else a ``ValueError``."""
    if not value.is_file():
        raise ValueError(f"file {str(value)!r} does not exist")
    return value
