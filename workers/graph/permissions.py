"""Which Graph application permission each workflow step needs: one table, read by the
start-up / fail-fast permission check and rendered in docs/workflow.md.

Each entry is a list of requirements that must ALL be met; a requirement lists permissions of
which ANY ONE suffices (least privileged first). Sources: the synchronization pages'
permission tables (``Application.ReadWrite.OwnedBy`` least privileged,
``Synchronization.ReadWrite.All`` higher), applicationTemplate: instantiate
(``Application.ReadWrite.OwnedBy``, ``Application.ReadWrite.All``, ``Directory.ReadWrite.All``)
and servicePrincipal: post appRoleAssignedTo ("``AppRoleAssignment.ReadWrite.All`` and
``Application.Read.All``, ``AppRoleAssignment.ReadWrite.All`` and ``Directory.Read.All``"; the
ReadWrite forms include the reads).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from service.core.actions import steps_for
from service.core.errors import GraphFailure, GraphPermissionMissing
from service.core.models import Record, Step

#: What the synchronization API accepts (Graph's table: OwnedBy least privileged,
#: Synchronization.ReadWrite.All higher; older docs and Terraform: the other two).
SYNCHRONIZATION = (
    "Application.ReadWrite.OwnedBy",
    "Synchronization.ReadWrite.All",
    "Application.ReadWrite.All",
    "Directory.ReadWrite.All",
)
OWNED_BY = "Application.ReadWrite.OwnedBy"
INSTANTIATE = (
    "Application.ReadWrite.OwnedBy",
    "Application.ReadWrite.All",
    "Directory.ReadWrite.All",
)
ASSIGNMENTS = ("AppRoleAssignment.ReadWrite.All",)
DIRECTORY_READ = (
    "Application.Read.All",
    "Directory.Read.All",
    "Application.ReadWrite.All",
    "Directory.ReadWrite.All",
)

#: Permissions of which any one suffices.
Requirement = tuple[str, ...]
_SYNC: tuple[Requirement, ...] = (SYNCHRONIZATION,)

#: Per step, the requirements that must all be met.
STEP_PERMISSIONS: Mapping[Step, tuple[Requirement, ...]] = MappingProxyType(
    {
        Step.INSTANTIATE_APP: (INSTANTIATE,),
        Step.ASSIGN: (ASSIGNMENTS, DIRECTORY_READ),
        Step.RESOLVE_TEMPLATE: _SYNC,
        Step.CREATE_JOB: _SYNC,
        Step.SAVE_SECRETS: _SYNC,
        Step.MAP_ATTRIBUTES: _SYNC,
        Step.START_JOB: _SYNC,
        Step.VERIFY: _SYNC,
        Step.FIND_JOB: _SYNC,
        Step.PAUSE_JOB: _SYNC,
        Step.RESTART_JOB: _SYNC,
        Step.DELETE_JOB: _SYNC,
        Step.LIFT_QUARANTINE: _SYNC,
        Step.SMOKE_TEST: _SYNC,
    }
)


def steps_calling_graph(record: Record) -> list[Step]:
    """The steps that will call Graph for this request (its action's steps, less those it
    skips)."""
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
        skipped |= {Step.START_JOB, Step.VERIFY, Step.SMOKE_TEST}
    if record.smoke_test is None:
        skipped.add(Step.SMOKE_TEST)
    return [s for s in steps_for(record.action) if s not in skipped]


def missing_permissions(record: Record, roles: Iterable[str]) -> dict[Step, list[Requirement]]:
    """The steps of this request the token's ``roles`` cannot perform, with the requirements
    of each that they do not meet."""
    held = set(roles)
    missing = {
        step: [need for need in STEP_PERMISSIONS[step] if not held.intersection(need)]
        for step in steps_calling_graph(record)
    }
    return {step: unmet for step, unmet in missing.items() if unmet}


def describe(requirements: Iterable[Requirement]) -> str:
    """``one of A, B and C`` for the requirements ``[(A, B), (C,)]``."""
    return " and ".join(
        need[0] if len(need) == 1 else f"one of {', '.join(need)}" for need in requirements
    )


def _flat(requirements: Iterable[Requirement]) -> list[str]:
    return [perm for need in requirements for perm in need]


def _has(roles: Iterable[str]) -> str:
    return ", ".join(roles) or "no application permission"


def token_lacks(
    roles: tuple[str, ...] | None, record: Record | None = None
) -> GraphPermissionMissing | None:
    """The fail-fast failure when the token's ``roles`` cannot perform a step this request
    will call (without a record: the synchronization API at all); None when they can, or
    when the roles cannot be read (Graph's answers then decide)."""
    if roles is None:
        return None
    if record is not None:
        missing = missing_permissions(record, roles)
    else:
        held = set(roles) & set(SYNCHRONIZATION)
        missing = {} if held else {Step.CREATE_JOB: [SYNCHRONIZATION]}
    if not missing:
        return None
    needs = "; ".join(f"{step.value} needs {describe(unmet)}" for step, unmet in missing.items())
    return GraphPermissionMissing(
        f"the app's access token holds {_has(roles)}: {needs} (application permissions, "
        "admin-consented). Grant them, then retry the request",
        details={
            "needed": {step.value: _flat(unmet) for step, unmet in missing.items()},
            "tokenRoles": list(roles),
        },
    )


def refused(step: Step, error: GraphFailure, what: str) -> GraphPermissionMissing:
    """A 403 from Graph on ``step`` as the fail-fast ``GraphPermissionMissing`` failure."""
    needed = STEP_PERMISSIONS[step]
    return GraphPermissionMissing(
        f"Graph refused to {what} ({error.code}): the application needs {describe(needed)}",
        graph_status=error.status,
        graph_request_id=error.request_id,
        details={"step": step.value, "needed": _flat(needed)},
    )


def unknown_error_hint(
    roles: tuple[str, ...] | None, service_principal_id: str, error: GraphFailure
) -> GraphPermissionMissing:
    """What a 401 ``UnknownError`` that outlasted the replication-lag budget means: a missing
    permission, or with only ``Application.ReadWrite.OwnedBy`` an app that does not own the
    principal (Graph answers both exactly like a principal too new to be seen)."""
    held = tuple(roles or ())
    wide = set(held) & (set(SYNCHRONIZATION) - {OWNED_BY})
    if OWNED_BY in held and not wide:
        why = (
            f"the app holds only {OWNED_BY}, which reaches only the service principals it "
            f"owns: add the app as an owner of service principal {service_principal_id}, or "
            "grant Synchronization.ReadWrite.All"
        )
    else:
        why = (
            f"Graph kept answering 401 UnknownError past the replication-lag budget; the app "
            f"holds {_has(held)}: check that it is granted (and admin-consented) one of "
            f"{', '.join(SYNCHRONIZATION)}"
        )
    return GraphPermissionMissing(
        why,
        graph_status=error.status,
        graph_request_id=error.request_id,
        details={"needed": list(SYNCHRONIZATION), "tokenRoles": list(held)},
    )
