"""Ticketing webhook sources: their configuration, their signature checks and payload mapping.

``PROVISIONER_WEBHOOKS_FILE`` (YAML or JSON) names each source (the ``{source}`` of
``POST /v1/webhooks/{source}``), its kind, where its secrets are (names of environment
variables, so the file holds no secret) and how its payload maps to a provisioning request::

    sources:
      jira:
        kind: jira                          # jira | servicenow | standard (default: the name)
        secret_env: [JIRA_WEBHOOK_SECRET]   # several for rotation: any one may sign
        mapping:
          servicePrincipalId: /issue/fields/customfield_10050   # JSON pointer ...
          templateId: issue.fields.customfield_10051.value      # ... or dotted path
          externalReference: /issue/key
        defaults: {templateId: scim}        # used when the mapped value is absent
    credential_sets:                        # named by a payload's credentialsRef
      salesforce-prod: {clientsecret: SF_CLIENT_SECRET, secrettoken: SF_TOKEN}

Kinds:

- ``jira``: ``X-Hub-Signature: sha256=<hex HMAC-SHA256 of the raw body>`` (``X-Hub-Signature-256``
  is accepted too); dedupe by ``X-Atlassian-Webhook-Identifier``.
- ``standard``: Standard Webhooks (``webhook-id``, ``webhook-timestamp``,
  ``webhook-signature: v1,<base64>`` over ``id.timestamp.body``, tolerance
  ``PROVISIONER_WEBHOOK_TOLERANCE_S``); dedupe by ``webhook-id``.
- ``servicenow``: either a bearer token (API key or Entra token) of a caller listed in
  ``bearer_callers``, or the Standard Webhooks headers produced by the script include in
  ``docs/webhooks.md``; dedupe by ``webhook-id``, else by ``mapping.deliveryId``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from service.core import signing

__all__ = [
    "Rejected",
    "WebhookSource",
    "WebhookSources",
    "load_webhook_sources",
    "lookup",
    "map_payload",
    "verify_hub_signature",
    "verify_standard",
]

Kind = Literal["jira", "servicenow", "standard"]
_SOURCE_NAME = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
MAX_ID_CHARS = 256
MISSING: Any = object()


class Rejected(Exception):
    """A delivery that is not authentic (bad or missing signature, stale timestamp)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# -- configuration ------------------------------------------------------------------------------
class FieldMap(BaseModel):
    """Where each request field is found in a payload (JSON pointer or dotted path)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    servicePrincipalId: str | None = None
    templateId: str | None = None
    externalReference: str | None = None
    callbackUrl: str | None = None
    credentialsRef: str | None = None
    deliveryId: str | None = None


class SourceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Kind | None = None
    secret_env: list[Annotated[str, Field(pattern=_ENV_NAME)]] = Field(default_factory=list)
    bearer_callers: list[str] = Field(default_factory=list)
    mapping: FieldMap
    defaults: dict[Literal["servicePrincipalId", "templateId", "externalReference"], str] = Field(
        default_factory=dict
    )

    @field_validator("secret_env", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


class WebhooksFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sources: dict[Annotated[str, Field(pattern=_SOURCE_NAME)], SourceConfig]
    credential_sets: dict[
        str, dict[Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")], str]
    ] = Field(default_factory=dict)


@dataclass(frozen=True)
class WebhookSource:
    """One configured source with its secrets resolved from the environment."""

    name: str
    kind: Kind
    secrets: tuple[str, ...] = field(repr=False)
    bearer_callers: frozenset[str]
    mapping: FieldMap
    defaults: Mapping[str, str]

    @property
    def caller(self) -> str:
        """The caller name its requests are recorded under."""
        return f"webhook:{self.name}"


@dataclass(frozen=True)
class WebhookSources:
    """Every configured source and the credential sets payloads may refer to."""

    sources: Mapping[str, WebhookSource]
    credential_sets: Mapping[str, tuple[tuple[str, str], ...]] = field(repr=False)


def _env(name: str, where: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise ValueError(f"{where}: environment variable {name} is not set")
    return value


def load_webhook_sources(path: Path | None) -> WebhookSources:
    """Parse and validate the webhooks file and resolve its secrets (ValueError when wrong)."""
    if path is None:
        return WebhookSources({}, {})
    try:
        text = Path(path).read_text()
        raw = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise ValueError(f"cannot read {str(path)!r}: {type(e).__name__}") from None
    try:
        parsed = WebhooksFile.model_validate(raw or {})
    except ValidationError as e:
        first = e.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "file"
        raise ValueError(f"{where}: {str(first['msg']).removeprefix('Value error, ')}") from None
    sources: dict[str, WebhookSource] = {}
    for name, conf in parsed.sources.items():
        kind: Kind
        if conf.kind is not None:
            kind = conf.kind
        elif name in ("jira", "servicenow", "standard"):
            kind = name  # type: ignore[assignment]
        else:
            raise ValueError(f"sources.{name}: set kind (jira, servicenow or standard)")
        secrets = tuple(_env(n, f"sources.{name}.secret_env") for n in conf.secret_env)
        if not secrets and not (kind == "servicenow" and conf.bearer_callers):
            raise ValueError(
                f"sources.{name}: needs secret_env (or, for servicenow, bearer_callers)"
            )
        if conf.mapping.servicePrincipalId is None and "servicePrincipalId" not in conf.defaults:
            raise ValueError(f"sources.{name}.mapping: servicePrincipalId is required")
        sources[name] = WebhookSource(
            name=name,
            kind=kind,
            secrets=secrets,
            bearer_callers=frozenset(conf.bearer_callers),
            mapping=conf.mapping,
            defaults={str(k): v for k, v in conf.defaults.items()},
        )
    sets = {
        set_name: tuple(
            (key, _env(env, f"credential_sets.{set_name}.{key}")) for key, env in entries.items()
        )
        for set_name, entries in parsed.credential_sets.items()
    }
    return WebhookSources(sources, sets)


# -- signatures ---------------------------------------------------------------------------------
def verify_hub_signature(secrets: tuple[str, ...], body: bytes, header: str | None) -> None:
    """Check ``sha256=<hex>`` (HMAC-SHA256 of the raw body) against every secret."""
    if not header:
        raise Rejected("missing signature")
    scheme, _, offered = header.strip().partition("=")
    if scheme.lower() != "sha256" or not offered:
        raise Rejected("unsupported signature scheme")
    offered_b = offered.strip().lower().encode()
    ok = False
    for secret in secrets:
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest().encode()
        ok |= hmac.compare_digest(expected, offered_b)
    if not ok:
        raise Rejected("signature mismatch")


def verify_standard(
    secrets: tuple[str, ...],
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_s: int = 300,
    now: float | None = None,
) -> str:
    """Check Standard Webhooks headers; return the ``webhook-id`` (the dedupe key)."""
    msg_id = headers.get("webhook-id", "")
    stamp = headers.get("webhook-timestamp", "")
    signature = headers.get("webhook-signature", "")
    if not msg_id or not stamp or not signature:
        raise Rejected("missing webhook-id, webhook-timestamp or webhook-signature")
    if len(msg_id) > MAX_ID_CHARS or not msg_id.isprintable():
        raise Rejected("invalid webhook-id")
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
        raise Rejected("invalid webhook-timestamp")
    timestamp = int(stamp)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise Rejected("timestamp outside the tolerance")
    try:
        ok = signing.verify(list(secrets), msg_id, timestamp, body, signature)
    except ValueError:  # a whsec_ secret that is not base64 (config error): treat as mismatch
        ok = False
    if not ok:
        raise Rejected("signature mismatch")
    return msg_id


# -- payload mapping ----------------------------------------------------------------------------
def lookup(payload: Any, path: str) -> Any:
    """The value at a JSON pointer (``/a/0/b``) or dotted path (``a.0.b``), else MISSING."""
    if path.startswith("/"):
        parts = [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]
    else:
        parts = path.split(".")
    node = payload
    for part in parts:
        if isinstance(node, dict):
            if part not in node:
                return MISSING
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return MISSING
    return node


def map_payload(
    source: WebhookSource, payload: Any, credential_sets: Mapping[str, tuple[tuple[str, str], ...]]
) -> tuple[dict[str, Any], str | None]:
    """The request body the payload stands for, and its delivery id from the mapping (if any).

    Raises ValueError naming the request field when a credentials reference is unknown.
    """
    body: dict[str, Any] = {}
    mapping = source.mapping
    for name in ("servicePrincipalId", "templateId", "externalReference", "callbackUrl"):
        path = getattr(mapping, name)
        value = MISSING if path is None else lookup(payload, path)
        if value is MISSING or value is None or value == "":
            value = source.defaults.get(name, MISSING)
        if value is MISSING:
            continue
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        body[name] = str(value) if numeric else value
    if mapping.credentialsRef is not None:
        ref = lookup(payload, mapping.credentialsRef)
        if ref not in (MISSING, None, ""):
            if not isinstance(ref, str) or ref not in credential_sets:
                raise ValueError("credentialsRef names no configured credential set")
            body["credentials"] = [{"key": k, "value": v} for k, v in credential_sets[ref]]
    delivery: str | None = None
    if mapping.deliveryId is not None:
        found = lookup(payload, mapping.deliveryId)
        if isinstance(found, str | int) and str(found):
            delivery = str(found)[:MAX_ID_CHARS]
    return body, delivery
