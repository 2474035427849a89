"""App role assignments (``appRoleAssignedTo``) of principals. Pure (no aiohttp).

Adding a (principal, role) pair the resource already has is refused as Graph does: 400
``Request_BadRequest`` "Permission being assigned already exists on the object". A role must be
one of the resource's ``appRoles``; the default access role (the zero GUID) only when it
declares none (REF v1.0-approleassignment.md).
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from collections import Counter
from typing import Any

from sandbox.models import GraphError, bad_request, iso

DEFAULT_ACCESS_ROLE = "00000000-0000-0000-0000-000000000000"
DUPLICATE = "Permission being assigned already exists on the object"


def _guid(value: Any, name: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise bad_request(f"Invalid value specified for property '{name}' of resource "
                          "'AppRoleAssignment'.") from None  # fmt: skip


class AssignmentStore:
    def __init__(self, stats: Counter[str]) -> None:
        self.by_resource: dict[str, list[dict[str, Any]]] = {}
        self.stats = stats

    def of(self, sp_id: str) -> list[dict[str, Any]]:
        return list(self.by_resource.get(sp_id.lower(), []))

    def add(
        self, sp_id: str, sp_name: str, app_id: str, role_ids: list[str], body: dict[str, Any]
    ) -> dict[str, Any]:
        principal = _guid(body.get("principalId"), "principalId")
        resource = _guid(body.get("resourceId"), "resourceId")
        role = _guid(body.get("appRoleId"), "appRoleId")
        if resource != sp_id.lower():
            raise bad_request("The resourceId must be the service principal of the request URL.")
        allowed = {r.lower() for r in role_ids} or {DEFAULT_ACCESS_ROLE}
        if role not in allowed:
            self.stats["assignments_refused"] += 1
            raise GraphError(
                400,
                "Request_BadRequest",
                f"Permission being assigned was not found on application '{app_id}'.",
            )
        existing = self.by_resource.setdefault(sp_id.lower(), [])
        if any(a["principalId"] == principal and a["appRoleId"] == role for a in existing):
            self.stats["assignments_duplicate"] += 1
            raise GraphError(400, "Request_BadRequest", DUPLICATE)
        raw = uuid.UUID(principal).bytes + uuid.uuid4().bytes[:8]
        made = {
            "id": base64.urlsafe_b64encode(raw).decode().rstrip("="),
            "appRoleId": role,
            "createdDateTime": iso(dt.datetime.now(dt.UTC)),
            "deletedDateTime": None,
            "principalDisplayName": f"Principal {principal[:8]}",
            "principalId": principal,
            "principalType": "Group" if principal.startswith("0") else "User",
            "resourceDisplayName": sp_name,
            "resourceId": resource,
        }
        existing.append(made)
        self.stats["assignments_added"] += 1
        return made

    def stats_json(self) -> dict[str, list[list[str]]]:
        return {
            sp: sorted([a["principalId"], a["appRoleId"]] for a in items)
            for sp, items in self.by_resource.items()
        }
