"""Ticketing webhook sources: their configuration, read and checked at start-up.

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
          credentialsRef: /issue/fields/customfield_10052/value
        defaults: {templateId: scim}        # used when the mapped value is absent
        reference_pattern: "^[A-Z][A-Z0-9_]*-[1-9][0-9]*$"   # default: the kind's id format
    credential_sets:                        # named by a payload's credentialsRef
      salesforce-prod:
        values: {clientsecret: SF_CLIENT_SECRET, secrettoken: SF_TOKEN}
        service_principals: [15331f0e-bdc6-41e2-afa0-a4c9abfe90b3]   # required: who may get it
        templates: [salesforce]             # optional: and only with these templates

A credential set is bound to the service principals (and optionally templates) it may be sent
to; a delivery naming it for anything else is refused at intake (422 ``credentialsRef``). The
``externalReference`` of a delivery must match the source's ``reference_pattern`` (by default
the kind's id format: a Jira issue key, a ServiceNow ``sys_id``; none for ``standard``),
because the ticket write-back builds a URL from it. Kinds and their signatures:
:mod:`service.api.webhooks.signatures`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from service.api.webhooks.signatures import (
    MAX_ID_CHARS,
    Rejected,
    verify_hub_signature,
    verify_standard,
)
from service.core.files import load_model

__all__ = [
    "MAX_ID_CHARS",
    "REFERENCE_PATTERNS",
    "CredentialSet",
    "Rejected",
    "WebhookSource",
    "WebhookSources",
    "load_webhook_sources",
    "verify_hub_signature",
    "verify_standard",
]

Kind = Literal["jira", "servicenow", "standard"]
_SOURCE_NAME = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
_CREDENTIAL_KEY = r"^[A-Za-z][A-Za-z0-9_]{0,63}$"
_TEMPLATE_ID = r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$"
#: Each kind's ticket id format (what its write-back puts in a URL path).
REFERENCE_PATTERNS: Mapping[Kind, str | None] = {
    "jira": r"[A-Z][A-Z0-9_]*-[1-9][0-9]{0,17}",  # an issue key: PROJECT-123
    "servicenow": r"[0-9a-f]{32}",  # a sys_id
    "standard": None,  # whatever the source's reference_pattern says
}


# -- the file -----------------------------------------------------------------------------------
class FieldMap(BaseModel):
    """Where each request field is found in a payload (JSON pointer or dotted path)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    servicePrincipalId: str | None = None
    templateId: str | None = None
    externalReference: str | None = None
    callbackUrl: str | None = None
    credentialsRef: str | None = None
    deliveryId: str | None = None
    action: str | None = None  # issue 12: pause, resume, restart, deprovision, rotateCredentials


class SourceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Kind | None = None
    secret_env: list[Annotated[str, Field(pattern=_ENV_NAME)]] = Field(default_factory=list)
    bearer_callers: list[str] = Field(default_factory=list)
    mapping: FieldMap
    defaults: dict[
        Literal["servicePrincipalId", "templateId", "externalReference", "action"], str
    ] = Field(default_factory=dict)
    reference_pattern: Annotated[str, Field(min_length=1, max_length=500)] | None = None

    @field_validator("secret_env", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("reference_pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as e:
                raise ValueError(f"is not a regular expression ({e.msg})") from None
        return value


class CredentialSetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    values: dict[Annotated[str, Field(pattern=_CREDENTIAL_KEY)], str] = Field(min_length=1)
    service_principals: list[str] = Field(min_length=1)
    templates: list[Annotated[str, Field(pattern=_TEMPLATE_ID)]] | None = None

    @model_validator(mode="before")
    @classmethod
    def _bound(cls, raw: object) -> object:
        if isinstance(raw, dict) and "values" not in raw:
            raise ValueError(
                "a credential set must be bound: put its variables under 'values' and list the "
                "'service_principals' (and optionally 'templates') it may be used for "
                "(see docs/webhooks.md)"
            )
        return raw

    @field_validator("service_principals")
    @classmethod
    def _guids(cls, value: list[str]) -> list[str]:
        try:
            return [str(UUID(v)) for v in value]
        except ValueError:
            raise ValueError("service_principals must be service principal GUIDs") from None


class WebhooksFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sources: dict[Annotated[str, Field(pattern=_SOURCE_NAME)], SourceConfig]
    credential_sets: dict[str, CredentialSetConfig] = Field(default_factory=dict)


# -- what the handler uses ----------------------------------------------------------------------
@dataclass(frozen=True)
class WebhookSource:
    """One configured source with its secrets resolved from the environment."""

    name: str
    kind: Kind
    secrets: tuple[str, ...] = field(repr=False)
    bearer_callers: frozenset[str]
    mapping: FieldMap
    defaults: Mapping[str, str]
    reference_pattern: re.Pattern[str] | None = None

    @property
    def caller(self) -> str:
        """The caller name its requests are recorded under."""
        return f"webhook:{self.name}"


@dataclass(frozen=True)
class CredentialSet:
    """Credential values (from the environment) and what they may be sent to."""

    name: str
    values: tuple[tuple[str, str], ...] = field(repr=False)
    service_principals: frozenset[str]
    templates: frozenset[str] | None  # None: any template

    def refusal(self, service_principal_id: str, template_id: str | None) -> str | None:
        """None when this set may go to this principal and template, else why not."""
        if str(UUID(service_principal_id)) not in self.service_principals:
            return "names a credential set that is not bound to this service principal"
        if self.templates is not None and template_id not in self.templates:
            return "names a credential set that is not bound to this template"
        return None


@dataclass(frozen=True)
class WebhookSources:
    """Every configured source and the credential sets payloads may refer to."""

    sources: Mapping[str, WebhookSource]
    credential_sets: Mapping[str, CredentialSet] = field(repr=False)


def _env(name: str, where: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise ValueError(f"{where}: environment variable {name} is not set")
    return value


def _source(name: str, conf: SourceConfig) -> WebhookSource:
    kind: Kind
    if conf.kind is not None:
        kind = conf.kind
    elif name in ("jira", "servicenow", "standard"):
        kind = name  # type: ignore[assignment]
    else:
        raise ValueError(f"sources.{name}: set kind (jira, servicenow or standard)")
    secrets = tuple(_env(n, f"sources.{name}.secret_env") for n in conf.secret_env)
    if not secrets and not (kind == "servicenow" and conf.bearer_callers):
        raise ValueError(f"sources.{name}: needs secret_env (or, for servicenow, bearer_callers)")
    if conf.mapping.servicePrincipalId is None and "servicePrincipalId" not in conf.defaults:
        raise ValueError(f"sources.{name}.mapping: servicePrincipalId is required")
    pattern = conf.reference_pattern or REFERENCE_PATTERNS[kind]
    return WebhookSource(
        name=name,
        kind=kind,
        secrets=secrets,
        bearer_callers=frozenset(conf.bearer_callers),
        mapping=conf.mapping,
        defaults={str(k): v for k, v in conf.defaults.items()},
        reference_pattern=re.compile(pattern) if pattern else None,
    )


def load_webhook_sources(path: Path | None) -> WebhookSources:
    """Parse and validate the webhooks file and resolve its secrets (ValueError when wrong)."""
    if path is None:
        return WebhookSources({}, {})
    parsed = load_model(WebhooksFile, path)
    sources = {name: _source(name, conf) for name, conf in parsed.sources.items()}
    sets = {
        set_name: CredentialSet(
            name=set_name,
            values=tuple(
                (key, _env(env, f"credential_sets.{set_name}.values.{key}"))
                for key, env in conf.values.items()
            ),
            service_principals=frozenset(conf.service_principals),
            templates=None if conf.templates is None else frozenset(conf.templates),
        )
        for set_name, conf in parsed.credential_sets.items()
    }
    return WebhookSources(sources, sets)
