"""Seed model: the tenant, its applications (credentials, roles) and service principals."""

from __future__ import annotations

import json
import uuid
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

KNOWN_ROLES = (
    "Synchronization.ReadWrite.All",
    "Synchronization.Read.All",
    "Application.ReadWrite.OwnedBy",
    "Application.ReadWrite.All",
    "Directory.ReadWrite.All",
    "Application.Read.All",
    "AppRoleAssignment.ReadWrite.All",
    "AuditLog.Read.All",
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SeedTemplate(_Model):
    id: str = Field(min_length=1)
    default: bool = False
    factoryTag: str | None = None
    description: str | None = None
    discoverable: bool = True


class SeedApplication(_Model):
    clientId: str
    displayName: str | None = None
    clientSecret: str | None = None
    # "generated": the sandbox creates the certificate in its state dir; otherwise a PEM path.
    certificate: Literal["generated"] | str | None = None
    roles: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _has_credential(self) -> SeedApplication:
        uuid.UUID(self.clientId)
        if self.clientSecret is None and self.certificate is None:
            raise ValueError(f"application {self.clientId} needs clientSecret or certificate")
        return self


class SeedPrincipal(_Model):
    id: str
    displayName: str | None = None
    appId: str | None = None
    templates: list[SeedTemplate] = Field(default_factory=list)
    newForMs: float = Field(default=0, ge=0)
    # Client ids of the applications that own this principal: a token whose only write
    # permission is Application.ReadWrite.OwnedBy may touch it only when its appid is here.
    owners: list[str] = Field(default_factory=list)
    # Per-principal job behaviour after start; None: the fault profile's.
    quarantineAfterS: float | None = Field(default=None, ge=0)
    failCycles: bool | None = None

    @model_validator(mode="after")
    def _valid(self) -> SeedPrincipal:
        uuid.UUID(self.id)
        if sum(1 for t in self.templates if t.default) > 1:
            raise ValueError(f"service principal {self.id}: more than one default template")
        return self


class SeedGenerate(_Model):
    count: int = Field(default=0, ge=0, le=100_000)
    templates: list[SeedTemplate] = Field(
        default_factory=lambda: [SeedTemplate(id="scim", default=True, factoryTag="CustomSCIM")]
    )
    newForMs: float = Field(default=0, ge=0)


class SeedAppRole(_Model):
    id: str
    displayName: str
    value: str | None = None
    allowedMemberTypes: list[str] = Field(default_factory=lambda: ["User"])
    isEnabled: bool = True


def _default_targets() -> dict[str, list[str]]:
    return {
        "User": ["userName", "active", "email", "displayName", "department", "title"],
        "Group": ["displayName", "members"],
    }


class SeedGalleryApp(_Model):
    """A gallery application template (sandbox/gallery.py): instantiating it makes a principal
    with these sync ``templates`` and ``appRoles``, whose job schema targets
    ``targetAttributes`` (object name -> attribute names) in a directory named after it."""

    id: str
    displayName: str
    publisher: str = "Sandbox"
    categories: list[str] = Field(default_factory=list)
    provisioning: bool = True
    appRoles: list[SeedAppRole] = Field(default_factory=list)
    templates: list[SeedTemplate] = Field(default_factory=list)
    targetAttributes: dict[str, list[str]] = Field(default_factory=_default_targets)

    @model_validator(mode="after")
    def _valid(self) -> SeedGalleryApp:
        uuid.UUID(self.id)
        for role in self.appRoles:
            uuid.UUID(role.id)
        return self


class Seed(_Model):
    tenantId: str
    applications: list[SeedApplication] = Field(default_factory=list)
    servicePrincipals: list[SeedPrincipal] = Field(default_factory=list)
    generate: SeedGenerate = Field(default_factory=SeedGenerate)
    applicationTemplates: list[SeedGalleryApp] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> Seed:
        uuid.UUID(self.tenantId)
        ids = [p.id.lower() for p in self.all_principals()]
        if len(ids) != len(set(ids)):
            raise ValueError("duplicate service principal ids")
        apps = [a.clientId.lower() for a in self.applications]
        if len(apps) != len(set(apps)):
            raise ValueError("duplicate application client ids")
        return self

    def all_principals(self) -> list[SeedPrincipal]:
        """Listed principals followed by the generated ones."""
        return [*self.servicePrincipals, *generated_principals(self)]


def generated_principal_id(tenant_id: str, index: int) -> str:
    """Id of generated principal ``index``: uuid5(tenantId, "generated-principal-{index}")."""
    return str(uuid.uuid5(uuid.UUID(tenant_id), f"generated-principal-{index}"))


def generated_principals(seed: Seed) -> list[SeedPrincipal]:
    gen = seed.generate
    return [
        SeedPrincipal(
            id=generated_principal_id(seed.tenantId, i),
            displayName=f"Generated app {i}",
            templates=list(gen.templates),
            newForMs=gen.newForMs,
        )
        for i in range(gen.count)
    ]


def parse_document(text: str) -> Any:
    """JSON or YAML (YAML is a superset of JSON, but JSON errors read better)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return yaml.safe_load(text)


def load_seed(source: Path | dict[str, Any] | None = None) -> Seed:
    if source is None:
        text = resources.files("sandbox").joinpath("default_seed.yaml").read_text("utf-8")
        return Seed.model_validate(parse_document(text))
    if isinstance(source, dict):
        return Seed.model_validate(source)
    return Seed.model_validate(parse_document(source.read_text("utf-8")))
