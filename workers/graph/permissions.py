"""Which Graph application permission each workflow step needs: one table, read by the
start-up / fail-fast permission check and rendered in docs/workflow.md.

Each entry lists permissions of which ANY ONE suffices (least privileged first). Sources:
the synchronization pages' permission tables (``Application.ReadWrite.OwnedBy`` least
privileged, ``Synchronization.ReadWrite.All`` higher), applicationTemplate: instantiate
(``Application.ReadWrite.OwnedBy``, ``Application.ReadWrite.All``, ``Directory.ReadWrite.All``)
and servicePrincipal: post appRoleAssignedTo (``AppRoleAssignment.ReadWrite.All``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from service.core.errors import GraphFailure, WorkflowFailed
from service.core.models import Record, Step

#: What the synchronization API accepts (the truth issue's list).
SYNCHRONIZATION = (
    "Application.ReadWrite.OwnedBy",
    "Synchronization.ReadWrite.All",
    "Application.ReadWrite.All",
    "Directory.ReadWrite.All",
)
INSTANTIATE = (
    "Application.ReadWrite.OwnedBy",
    "Application.ReadWrite.All",
    "Directory.ReadWrite.All",
)
ASSIGNMENTS = ("AppRoleAssignment.ReadWrite.All",)

STEP_PERMISSIONS: Mapping[Step, tuple[str, ...]] = MappingProxyType(
    {
        Step.INSTANTIATE_APP: INSTANTIATE,
        Step.ASSIGN: ASSIGNMENTS,
        Step.RESOLVE_TEMPLATE: SYNCHRONIZATION,
        Step.CREATE_JOB: SYNCHRONIZATION,
        Step.SAVE_SECRETS: SYNCHRONIZATION,
        Step.MAP_ATTRIBUTES: SYNCHRONIZATION,
        Step.START_JOB: SYNCHRONIZATION,
        Step.VERIFY: SYNCHRONIZATION,
    }
)


def steps_calling_graph(record: Record) -> list[Step]:
    """The steps that will call Graph for this request (the others are skipped)."""
    skipped: set[Step] = set()
    if record.application is None:
        skipped.add(Step.INSTANTIATE_APP)
    if not record.assignments:
        skipped.add(Step.ASSIGN)
    if not record.attribute_mappings:
        skipped.add(Step.MAP_ATTRIBUTES)
    if not record.has_credentials and record.scope is None:
        skipped.add(Step.SAVE_SECRETS)
    if not record.start:
        skipped |= {Step.START_JOB, Step.VERIFY}
    return [s for s in Step if s not in skipped]


def missing_permissions(record: Record, roles: Iterable[str]) -> dict[Step, tuple[str, ...]]:
    """The steps of this request the token's ``roles`` cannot perform, with what each needs."""
    held = set(roles)
    return {
        step: STEP_PERMISSIONS[step]
        for step in steps_calling_graph(record)
        if not held.intersection(STEP_PERMISSIONS[step])
    }


def permission_missing(step: Step, error: GraphFailure, what: str) -> WorkflowFailed:
    """A 403 from Graph on ``step`` as the fail-fast ``GraphPermissionMissing`` failure."""
    needed = STEP_PERMISSIONS[step]
    return WorkflowFailed(
        f"Graph refused to {what} ({error.code}): the application needs one of {', '.join(needed)}",
        code="GraphPermissionMissing",
        graph_status=error.status,
        graph_request_id=error.request_id,
        details={"step": step.value, "needed": list(needed)},
    )
