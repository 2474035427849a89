"""The ``assign`` step: give the request's users and groups their app role, once.

Reads ``GET /servicePrincipals/{id}/appRoleAssignedTo`` and adds only the (principal, role)
pairs missing from it; it never removes an assignment, not even one it made. Without an
``appRoleId`` the app's default user role is used (:func:`workers.graph.apps.default_user_role`:
the ``User`` role, the only user role such as ``msiam_access``, or the default access role
``00000000-0000-0000-0000-000000000000`` when the app declares none). A POST whose outcome is
unclear (5xx, no answer) is followed by a fresh list, and Graph's duplicate refusal (400
"already exists", e.g. after a lost answer the list did not show yet) counts as present.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from service.core.errors import GraphError
from service.core.models import Outcome, Step
from workers.graph.apps import AppRoleAssignment, default_user_role
from workers.graph.permissions import refused
from workers.graph.response import GraphResponse
from workers.workflow.calls import Ambiguous
from workers.workflow.onboarding_errors import AppRoleAmbiguous, AssignmentRejected
from workers.workflow.retry import CallKind
from workers.workflow.steps import StepResult, Steps

STEP = Step.ASSIGN
_PASSES = 5  # list-then-add rounds; each unclear POST costs one


def is_duplicate(error: GraphError) -> bool:
    """Graph's answer to adding an assignment that already exists."""
    return error.status == 400 and "already exists" in error.message.lower()


async def _default_role(s: Steps) -> str:
    principal = await s.calls.call(
        STEP, CallKind.READ, lambda crid: s.graph.get_service_principal(s.sp, crid)
    )
    role = default_user_role(principal.value.app_roles)
    if role is None:
        roles = [f"{r.display_name or r.value} ({r.id})" for r in principal.value.app_roles if r.id]
        raise AppRoleAmbiguous(
            f"the app has several user roles and none named User: {'; '.join(roles)}; "
            "give appRoleId in each assignment",
            details={"appRoles": roles},
            graph_status=principal.status,
            graph_request_id=principal.request_id,
        )
    return role


def _adder(
    s: Steps, principal_id: str, role_id: str
) -> Callable[[str], Awaitable[GraphResponse[AppRoleAssignment]]]:
    return lambda crid: s.graph.add_app_role_assignment(s.sp, principal_id, role_id, crid)


async def assign(s: Steps) -> StepResult:
    """Add the missing assignments; skipped when the request names none."""
    rec = s.record
    if not rec.assignments:
        return StepResult(Outcome.SKIPPED, message="no assignments in the request", silent=True)
    default = None
    if any(a.app_role_id is None for a in rec.assignments):
        default = await _default_role(s)
    wanted = [
        (a.principal_id.lower(), (a.app_role_id or default or "").lower()) for a in rec.assignments
    ]
    added = 0
    for _ in range(_PASSES):
        listed = await s.calls.call(
            STEP, CallKind.READ, lambda crid: s.graph.list_app_role_assignments(s.sp, crid)
        )
        have = {
            ((a.principal_id or "").lower(), (a.app_role_id or "").lower()) for a in listed.value
        }
        missing = [w for w in wanted if w not in have]
        if not missing:
            return _all_present(added, len(wanted), listed)
        unclear = False
        for principal_id, role_id in missing:
            try:
                made = await _add(s, principal_id, role_id)
            except Ambiguous:
                unclear = True
                continue
            if made is None:
                continue  # present after all: the list lagged behind an earlier add
            added += 1
            if made.id:
                rec.assignments_made.append(made.id)
            await s.deps.store.save(rec)
        if not unclear:
            outcome = Outcome.SUCCEEDED if added else Outcome.SKIPPED
            return StepResult(outcome, message=f"added {added} of {len(wanted)} assignments")
    raise AssignmentRejected(
        f"assignments still unconfirmed after {_PASSES} rounds of list and add",
        details={"wanted": len(wanted), "added": added},
    )


def _all_present(
    added: int, wanted: int, listed: GraphResponse[list[AppRoleAssignment]]
) -> StepResult:
    if added:
        return StepResult(Outcome.SUCCEEDED, listed, f"added {added} of {wanted} assignments")
    return StepResult(Outcome.SKIPPED, listed, f"all {wanted} assignments already present")


async def _add(s: Steps, principal_id: str, role_id: str) -> AppRoleAssignment | None:
    """The assignment made; None when it exists already; Ambiguous when unclear."""
    try:
        made = await s.calls.call(STEP, CallKind.GRANT, _adder(s, principal_id, role_id))
    except GraphError as e:
        if is_duplicate(e):
            return None
        if e.status == 403:
            raise refused(STEP, e, "assign users and groups") from e
        if e.status == 400:
            raise AssignmentRejected(
                f"Graph refused to assign {principal_id} the role {role_id}: {e.code}: {e.message}",
                graph_status=e.status,
                graph_request_id=e.request_id,
                details={"principalId": principal_id, "appRoleId": role_id},
            ) from e
        raise
    return made.value
