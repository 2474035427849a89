"""Gallery application templates and the principals instantiated from them. Pure (no aiohttp).

``instantiate`` makes an application and a service principal as Graph does (201 with both):
the principal gets the template's synchronization templates and app roles, and is "new" for
``new_principal_lag_ms`` (404 on it, 401 ``UnknownError`` on its synchronization calls) and
missing from ``GET /servicePrincipals`` for ``principal_list_lag_ms``. Every call made counts
in ``stats``: the tests prove "exactly one app" from ``instantiated``.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sandbox.assignments import AssignmentStore
from sandbox.models import bad_request, iso, not_found
from sandbox.schema import SchemaStore
from sandbox.seed import SeedGalleryApp, SeedPrincipal

if TYPE_CHECKING:
    from sandbox.state import TenantState

_LITERAL = r"'((?:[^']|'')*)'"
_EQ = re.compile(rf"^\s*(\w+)\s+eq\s+{_LITERAL}\s*$", re.IGNORECASE)
_CONTAINS = re.compile(rf"^\s*contains\(\s*(\w+)\s*,\s*{_LITERAL}\s*\)\s*$", re.IGNORECASE)


def parse_filter(text: str | None, allowed: set[str]) -> list[tuple[str, str, str]]:
    """``a eq 'x' and contains(b, 'y')`` as [(op, property, value)]; 400 for anything else."""
    if text is None or not text.strip():
        return []
    clauses: list[tuple[str, str, str]] = []
    for part in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE):
        m = _EQ.match(part) or _CONTAINS.match(part)
        if m is None or m.group(1) not in allowed:
            raise bad_request(f"Invalid filter clause: '{part.strip()}'.")
        op = "eq" if _EQ.match(part) else "contains"
        clauses.append((op, m.group(1), m.group(2).replace("''", "'")))
    return clauses


def matches(item: dict[str, Any], clauses: list[tuple[str, str, str]]) -> bool:
    for op, prop, value in clauses:
        have = str(item.get(prop) or "").lower()
        if (op == "eq" and have != value.lower()) or (
            op == "contains" and value.lower() not in have
        ):
            return False
    return True


@dataclass
class GalleryPrincipal:
    sp_id: str
    app_object_id: str
    app_id: str
    template: SeedGalleryApp
    display_name: str
    created_at: float
    created_iso: str

    def roles_json(self) -> list[dict[str, Any]]:
        return [
            {
                "allowedMemberTypes": list(r.allowedMemberTypes),
                "description": r.displayName,
                "displayName": r.displayName,
                "id": r.id,
                "isEnabled": r.isEnabled,
                "origin": "Application",
                "value": r.value,
            }
            for r in self.template.appRoles
        ]


@dataclass
class GalleryState:
    tenant: TenantState
    clock: Callable[[], float]
    now: Callable[[], dt.datetime]
    apps: dict[str, GalleryPrincipal] = field(default_factory=dict)
    stats: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.templates = {t.id.lower(): t for t in self.tenant.seed.applicationTemplates}
        self.assignments = AssignmentStore(self.stats)
        self.schemas = SchemaStore(self.stats)

    # -- templates ------------------------------------------------------------------------
    @staticmethod
    def template_json(t: SeedGalleryApp) -> dict[str, Any]:
        return {
            "id": t.id,
            "displayName": t.displayName,
            "publisher": t.publisher,
            "categories": list(t.categories),
            "supportedProvisioningTypes": ["sync"] if t.provisioning else [],
            "supportedSingleSignOnModes": ["saml", "notSupported"],
            "homePageUrl": None,
            "logoUrl": None,
            "description": None,
        }

    def list_templates(self, odata_filter: str | None) -> list[dict[str, Any]]:
        clauses = parse_filter(odata_filter, {"displayName", "categories"})
        items = [self.template_json(t) for t in self.templates.values()]
        return [i for i in items if matches(i, clauses)]

    def template(self, template_id: str) -> SeedGalleryApp:
        found = self.templates.get(template_id.lower())
        if found is None:
            raise not_found(template_id)
        return found

    # -- instantiate ----------------------------------------------------------------------
    def instantiate(self, template_id: str, display_name: str, lag_ms: float) -> GalleryPrincipal:
        t = self.template(template_id)
        sp_id, app_id = str(uuid.uuid4()), str(uuid.uuid4())
        self.tenant.add_principal(
            SeedPrincipal(
                id=sp_id, displayName=display_name, appId=app_id, templates=t.templates,
                newForMs=lag_ms,
            )
        )  # fmt: skip
        made = GalleryPrincipal(
            sp_id=sp_id,
            app_object_id=str(uuid.uuid4()),
            app_id=app_id,
            template=t,
            display_name=display_name,
            created_at=self.clock(),
            created_iso=iso(self.now()),
        )
        self.apps[sp_id] = made
        self.stats["instantiated"] += 1
        return made

    def instantiate_json(self, p: GalleryPrincipal) -> dict[str, Any]:
        app = {
            "id": p.app_object_id,
            "appId": p.app_id,
            "applicationTemplateId": p.template.id,
            "createdDateTime": p.created_iso,
            "displayName": p.display_name,
            "signInAudience": "AzureADMyOrg",
            "appRoles": p.roles_json(),
        }
        return {"application": app, "servicePrincipal": self.principal_json(p.sp_id)}

    # -- principals -----------------------------------------------------------------------
    def principal_json(self, sp_id: str) -> dict[str, Any]:
        base = self.tenant.principal(sp_id)
        made = self.apps.get(base.id)
        return {
            "id": base.id,
            "accountEnabled": True,
            "appId": base.app_id,
            "appDisplayName": base.display_name,
            "displayName": base.display_name,
            "applicationTemplateId": made.template.id if made else None,
            "appRoleAssignmentRequired": made is not None,
            "appRoles": made.roles_json() if made else [],
            "createdDateTime": made.created_iso if made else None,
            "servicePrincipalType": "Application",
            "tags": ["WindowsAzureActiveDirectoryIntegratedApp"],
        }

    def visible(self, sp_id: str) -> GalleryPrincipal | None:
        """404 while the principal is unknown or still replicating."""
        if self.tenant.is_new(sp_id):
            raise not_found(sp_id)
        self.tenant.principal(sp_id)
        return self.apps.get(sp_id.lower())

    def list_principals(self, odata_filter: str | None, list_lag_ms: float) -> list[dict[str, Any]]:
        clauses = parse_filter(odata_filter, {"applicationTemplateId", "displayName", "appId"})
        now = self.clock()
        out = []
        for sp_id in list(self.tenant.principals):
            made = self.apps.get(sp_id)
            if made is not None and (now - made.created_at) * 1000 < list_lag_ms:
                continue  # not replicated to this replica's list yet
            item = self.principal_json(sp_id)
            if matches(item, clauses):
                out.append(item)
        return out

    def target(self, sp_id: str) -> tuple[str, dict[str, list[str]]]:
        """The target directory's name and objects of a principal's job schema."""
        made = self.apps.get(sp_id.lower())
        if made is None:
            principal = self.tenant.principal(sp_id)
            return principal.display_name, SeedGalleryApp.model_fields[
                "targetAttributes"
            ].get_default(call_default_factory=True)
        return made.template.displayName, made.template.targetAttributes

    def stats_json(self) -> dict[str, Any]:
        apps: Counter[str] = Counter(
            f"{p.template.id}|{p.display_name}" for p in self.apps.values()
        )
        return {
            **dict(self.stats),
            "apps": [
                {"id": p.sp_id, "templateId": p.template.id, "displayName": p.display_name}
                for p in self.apps.values()
            ],
            "duplicateApps": sorted(k for k, n in apps.items() if n > 1),
            "assignments": self.assignments.stats_json(),
            "schemaPuts": dict(self.schemas.puts),
            "syncAll": {sp: self.tenant.secrets.get(sp, {}).get("SyncAll") for sp in self.apps},
            "mappings": self.schemas.mappings_json(),
        }
