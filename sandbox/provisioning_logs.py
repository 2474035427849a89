"""The sandbox's provisioning logs (``GET /auditLogs/provisioning``): one provisioningObjectSummary
per object a job's cycle processed, in Graph's documented shape, so the health watch's per-user
outcomes can be tested against something that behaves like Graph.

A job's first cycle after a start or restart (its initial cycle: no watermark yet) logs a
``create`` for every object in scope: the assigned users and groups, or the whole directory
when ``SyncAll`` is ``true`` (:meth:`sandbox.state.TenantState.entitled`'s rule). Later
(incremental) cycles log only the objects that failed before: the escrows Graph retries each
cycle. A cycle that could not connect (quarantine) logs nothing. Entries are spaced evenly
between the cycle's ``timeBegan`` and ``timeEnded`` and share its ``cycleId``.

Outcomes per object are test control: ``PUT /_sandbox/provisioning-logs``
``{"failures": {"<objectId>": "reason"}, "skipped": ["<objectId>"]}``. The route's filter
(:func:`matches`) takes what the reference page documents: ``eq`` / ``contains`` on
``jobId``, ``cycleId``, ``changeId``, ``id`` and ``provisioningAction``, ``gt`` / ``lt`` / ``eq``
on ``activityDateTime``, joined by ``and``; values are case sensitive (the page: "The filters
are all case sensitive"). The route needs ``AuditLog.Read.All`` (403 otherwise, in app.py).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sandbox.models import bad_request

if TYPE_CHECKING:
    from sandbox.models import Job
    from sandbox.state import TenantState

AUDIT_LOG_ROLE = "AuditLog.Read.All"
FAILURE_CODE = "SandboxEntryExportFailed"
STRING_FIELDS = frozenset({"jobId", "cycleId", "changeId", "id", "provisioningAction"})
_CLAUSE = re.compile(
    r"^\s*(?:(?P<field>\w+)\s+(?P<op>eq|gt|lt)\s+(?P<value>'(?:[^']|'')*'|[\w:.+-]+)"
    r"|contains\(\s*(?P<cfield>\w+)\s*,\s*(?P<cvalue>'(?:[^']|'')*')\s*\))\s*$"
)


@dataclass
class ProvisioningLogs:
    """Every entry logged so far, and the outcomes tests asked for."""

    state: TenantState
    entries: list[dict[str, Any]] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)  # objectId -> reason
    skipped: set[str] = field(default_factory=set)
    _initial_of: dict[str, dt.datetime | None] = field(default_factory=dict)  # job -> began
    _escrows: dict[str, set[str]] = field(default_factory=dict)  # job -> failed object ids

    def cycle_ended(self, job: Job, began: str, ended: str) -> None:
        """A cycle of ``job`` ended without a connection failure: log what it processed."""
        initial = self._initial_of.get(job.id, object()) != job.began
        self._initial_of[job.id] = job.began
        escrows = self._escrows.setdefault(job.id, set())
        if initial:
            escrows.clear()
        objects = [o for o in self.in_scope(job.sp_id) if initial or o[0] in escrows]
        if not objects:
            return
        start, end = _parse(began), _parse(ended)
        step = (end - start) / (len(objects) + 1)
        cycle_id = str(uuid.uuid4())
        for n, (object_id, kind) in enumerate(objects, start=1):
            reason = self.failures.get(object_id)
            status = "skipped" if object_id in self.skipped else "failure" if reason else "success"
            if status == "failure":
                escrows.add(object_id)
            else:
                escrows.discard(object_id)
            at = start + step * n
            self.entries.append(
                _entry(self.state, job, cycle_id, object_id, kind, status, reason, at)
            )

    def in_scope(self, sp_id: str) -> list[tuple[str, str]]:
        """(objectId, User | Group) of every object a cycle of the principal's job reads."""
        if self.state.secrets.get(sp_id, {}).get("SyncAll", "").lower() == "true":
            from sandbox.cycles import DIRECTORY_USERS

            base = uuid.UUID(self.state.tenant_id)
            return [(str(uuid.uuid5(base, f"user-{n}")), "User") for n in range(DIRECTORY_USERS)]
        return [
            (str(a.get("principalId")), str(a.get("principalType") or "User"))
            for a in self.state.gallery.assignments.of(sp_id)
        ]

    def select(self, filter_text: str | None) -> list[dict[str, Any]]:
        """The entries the ``$filter`` admits (400 when it is not one the sandbox knows)."""
        clauses = _clauses(filter_text)
        return [e for e in self.entries if all(matches(e, c) for c in clauses)]

    def control(self, data: Any) -> dict[str, Any]:
        """Apply a ``PUT /_sandbox/provisioning-logs`` body; raises ValueError when malformed."""
        if not isinstance(data, dict):
            raise ValueError("the body must be an object")
        failures, skipped = data.get("failures", {}), data.get("skipped", [])
        if not isinstance(failures, dict) or not all(isinstance(v, str) for v in failures.values()):
            raise ValueError("failures must map objectId -> reason")
        if not isinstance(skipped, list) or not all(isinstance(v, str) for v in skipped):
            raise ValueError("skipped must list objectIds")
        self.failures = {k.lower(): v for k, v in failures.items()}
        self.skipped = {s.lower() for s in skipped}
        return self.json()

    def json(self) -> dict[str, Any]:
        return {
            "failures": dict(self.failures),
            "skipped": sorted(self.skipped),
            "entries": len(self.entries),
        }


Clause = tuple[str, str, str]  # (field, op, value) with op eq | gt | lt | contains


def _clauses(text: str | None) -> list[Clause]:
    if text is None or not text.strip():
        return []
    out: list[Clause] = []
    for part in re.split(r"\s+and\s+", text.strip()):
        m = _CLAUSE.match(part)
        if m is None:
            raise bad_request(f"Invalid filter clause: '{part}'.")
        if m.group("cfield"):
            name, op, value = m.group("cfield"), "contains", m.group("cvalue")
        else:
            name, op, value = m.group("field"), m.group("op"), m.group("value")
        if name == "activityDateTime":
            if op == "contains":
                raise bad_request("contains is not supported on activityDateTime.")
            try:
                _parse(value.strip("'"))
            except ValueError:
                raise bad_request(f"Invalid date in filter: '{value}'.") from None
        elif name not in STRING_FIELDS or op not in {"eq", "contains"}:
            raise bad_request(f"Invalid filter clause: '{part}'.")
        elif not value.startswith("'"):
            raise bad_request(f"A string literal is expected in '{part}'.")
        out.append(
            (name, op, value.strip("'").replace("''", "'") if value.startswith("'") else value)
        )
    return out


def matches(entry: dict[str, Any], clause: Clause) -> bool:
    """Whether one entry passes one clause (string values compared case sensitively)."""
    name, op, value = clause
    if name == "activityDateTime":
        at, bound = _parse(entry["activityDateTime"]), _parse(value)
        return at == bound if op == "eq" else at > bound if op == "gt" else at < bound
    have = str(entry.get(name) or "")
    return have == value if op == "eq" else value in have


def _parse(text: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _entry(
    state: TenantState,
    job: Job,
    cycle_id: str,
    object_id: str,
    kind: str,
    status: str,
    reason: str | None,
    at: dt.datetime,
) -> dict[str, Any]:
    target = state.principal(job.sp_id).display_name
    error = None
    if status == "failure":
        error = {
            "errorCode": FAILURE_CODE,
            "reason": reason,
            "additionalDetails": None,
            "errorCategory": "nonServiceFailure",
            "recommendedAction": None,
        }
    step_status = "failure" if status == "failure" else "success"
    return {
        "id": str(uuid.uuid4()),
        "activityDateTime": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "tenantId": state.tenant_id,
        "jobId": job.id,
        "cycleId": cycle_id,
        "changeId": str(uuid.uuid4()),
        "provisioningAction": "other" if status == "skipped" else "create",
        "durationInMilliseconds": 120,
        "provisioningStatusInfo": {"status": status, "errorInformation": error},
        "provisioningSteps": _steps(kind, object_id, step_status, reason, target),
        "servicePrincipal": {"id": job.sp_id, "displayName": target},
        "sourceIdentity": {"id": object_id, "identityType": kind, "displayName": "", "details": {}},
        "targetIdentity": {"id": "", "identityType": kind, "displayName": "", "details": {}},
    }


def _steps(
    kind: str, object_id: str, status: str, reason: str | None, target: str
) -> list[dict[str, Any]]:
    """Import, then export (the step that fails), as in the reference's failure example."""
    imported = f"Received {kind} '{object_id}' change of type (Add)"
    exported = reason or f"{kind} '{object_id}' was created in {target}"
    return [
        {"name": "EntryImportAdd", "provisioningStepType": "import", "status": "success",
         "description": imported, "details": {}},
        {"name": "EntryExportAdd", "provisioningStepType": "export", "status": status,
         "description": exported, "details": {}},
    ]  # fmt: skip
