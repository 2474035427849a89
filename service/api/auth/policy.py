"""Per-caller authorization: what each caller may read, write and provision.

Read from ``PROVISIONER_ACCESS_POLICY_FILE`` (YAML or JSON), validated at start-up::

    roles:                        # token role or scope value -> what it grants
      Provisioning.ReadWrite.All: [read, write]
      Provisioning.Read.All: [read]
    tags:                         # named groups of service principal ids
      hr-apps: [6f1c3b9e-2a4d-4c8e-9b1f-0d2e3f4a5b6c]
    callers:
      portal:                     # an API key's name, or a name given to Entra app ids
        app_ids: [3d9e8f7a-6b5c-4d3e-2f1a-0b9c8d7e6f5a]
        permissions: [read, write]
        service_principals: ["tag:hr-apps", 15331f0e-bdc6-41e2-afa0-a4c9abfe90b3]
        templates: ["*"]
      "webhook:jira": {permissions: [write], service_principals: ["*"]}
      support: {permissions: [read, write, operator]}   # every caller's requests too
    default: null                 # the entry for callers not listed (null: they may do nothing)

``operator`` lets a caller read, list, retry and cancel the requests of every caller (ticket
requests made by ``webhook:*`` callers among them); its retries and cancels still pass its own
target policy and the request owner's.

An API-key caller gets its entry's ``permissions``. An Entra-token caller gets what its token's
``roles`` / ``scp`` grant through ``roles``, narrowed to its entry's ``permissions``. Without a
policy file every caller may read and write anything (API keys), and tokens are mapped by the
default ``roles`` above.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path
from typing import Annotated
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from service.core.files import load_model

__all__ = [
    "ANY",
    "AccessPolicy",
    "CallerPolicy",
    "Permission",
    "load_access_policy",
]

ANY = "*"
TAG_PREFIX = "tag:"


class Permission(StrEnum):
    """What a caller may do: ``read`` its requests, ``write`` (submit, cancel, retry), and as
    ``operator`` do so with every caller's requests (read and list them with ``read``, retry
    and cancel them with ``write``)."""

    READ = "read"
    WRITE = "write"
    OPERATOR = "operator"


ALL = frozenset(Permission)
DEFAULT_ROLES: dict[str, list[Permission]] = {
    "Provisioning.ReadWrite.All": [Permission.READ, Permission.WRITE],
    "Provisioning.Read.All": [Permission.READ],
    "Provisioning.Operate.All": [Permission.READ, Permission.WRITE, Permission.OPERATOR],
}


def _normalise_target(value: str) -> str:
    if value == ANY or value.startswith(TAG_PREFIX):
        return value
    try:
        return str(UUID(value))
    except ValueError:
        raise ValueError(f"{value!r} is not a service principal GUID, 'tag:NAME' or '*'") from None


class CallerPolicy(BaseModel):
    """One caller's rights."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    app_ids: list[str] = Field(default_factory=list)
    permissions: list[Permission] = Field(
        default_factory=lambda: [Permission.READ, Permission.WRITE]
    )
    service_principals: list[str] = Field(default_factory=lambda: [ANY])
    templates: list[str] = Field(default_factory=lambda: [ANY])

    @field_validator("app_ids")
    @classmethod
    def _app_ids(cls, value: list[str]) -> list[str]:
        return [str(UUID(v)) for v in value]

    @field_validator("service_principals")
    @classmethod
    def _principals(cls, value: list[str]) -> list[str]:
        return [_normalise_target(v) for v in value]


class AccessPolicy(BaseModel):
    """The whole policy; :meth:`permissions` and :meth:`target_allowed` answer the questions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    roles: dict[str, list[Permission]] = Field(default_factory=lambda: dict(DEFAULT_ROLES))
    tags: dict[str, list[str]] = Field(default_factory=dict)
    callers: dict[Annotated[str, Field(min_length=1, max_length=200)], CallerPolicy] = Field(
        default_factory=dict
    )
    default: CallerPolicy | None = None

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for name, ids in value.items():
            try:
                out[name] = [str(UUID(i)) for i in ids]
            except ValueError:
                raise ValueError(f"tag {name!r} must list service principal GUIDs") from None
        return out

    @model_validator(mode="after")
    def _known_tags(self) -> AccessPolicy:
        for name, entry in self.callers.items():
            for target in entry.service_principals:
                if target.startswith(TAG_PREFIX) and target[len(TAG_PREFIX) :] not in self.tags:
                    raise ValueError(f"caller {name!r} names unknown tag {target!r}")
        return self

    # -- questions --------------------------------------------------------------------------
    def entry(self, caller: str) -> CallerPolicy | None:
        """The caller's entry, the default one, or None (no rights at all)."""
        return self.callers.get(caller, self.default)

    def caller_for_app(self, app_id: str) -> str | None:
        """The configured caller name of an Entra application (client) id."""
        wanted = app_id.lower()
        for name, entry in self.callers.items():
            if wanted in entry.app_ids:
                return name
        return None

    def permissions(self, caller: str, token_roles: Iterable[str] | None) -> frozenset[Permission]:
        """What ``caller`` may do. ``token_roles`` is None for an API key, else the token's
        ``roles`` and ``scp`` values."""
        entry = self.entry(caller)
        if entry is None:
            return frozenset()
        allowed = frozenset(entry.permissions)
        if token_roles is None:
            return allowed
        granted: set[Permission] = set()
        for role in token_roles:
            granted.update(self.roles.get(role, ()))
        return allowed & granted

    def is_operator(self, caller: str, token_roles: Iterable[str] | None) -> bool:
        """True when ``caller`` may see (and, with write, act on) every caller's requests."""
        return Permission.OPERATOR in self.permissions(caller, token_roles)

    def target_allowed(
        self, caller: str, service_principal_id: str, template_id: str | None
    ) -> str | None:
        """None when ``caller`` may provision this principal with this template, else why not."""
        entry = self.entry(caller)
        if entry is None:
            return "this caller has no rights"
        principal = str(UUID(service_principal_id))
        if not any(self._matches(t, principal) for t in entry.service_principals):
            return "this caller may not provision this service principal"
        if ANY not in entry.templates:
            if template_id is None:
                return "this caller must name a templateId (it is limited to certain templates)"
            if template_id not in entry.templates:
                return "this caller may not use this template"
        return None

    def create_allowed(self, caller: str, template_id: str | None) -> str | None:
        """None when ``caller`` may create a gallery app (with this template), else why not:
        it needs every service principal (``*``), as the new principal cannot be named."""
        entry = self.entry(caller)
        if entry is None:
            return "this caller has no rights"
        if ANY not in entry.service_principals:
            return "this caller may not create applications (its policy names service principals)"
        return self.target_allowed(caller, str(UUID(int=0)), template_id)

    def request_allowed(
        self, caller: str, service_principal_id: str, template_id: str | None
    ) -> str | None:
        """:meth:`target_allowed` for a request's principal; :meth:`create_allowed` while it
        has none yet (a gallery app not made)."""
        if not service_principal_id:
            return self.create_allowed(caller, template_id)
        return self.target_allowed(caller, service_principal_id, template_id)

    def _matches(self, target: str, principal: str) -> bool:
        if target == ANY:
            return True
        if target.startswith(TAG_PREFIX):
            return principal in self.tags.get(target[len(TAG_PREFIX) :], ())
        return target == principal


def default_policy() -> AccessPolicy:
    """The policy without a file: every caller may read and write anything."""
    return AccessPolicy(default=CallerPolicy())


def load_access_policy(path: Path | None) -> AccessPolicy:
    """Parse and validate the policy file; any problem is a ValueError naming the file's issue."""
    if path is None:
        return default_policy()
    return load_model(AccessPolicy, path)
