"""The one permission table: every step has an entry; a token is judged by its request's steps."""

from __future__ import annotations

from service.core.actions import ACTION_STEPS
from service.core.models import Record, Step
from workers.graph.permissions import (
    DIRECTORY_READ,
    STEP_PERMISSIONS,
    missing_permissions,
    steps_calling_graph,
    token_lacks,
)

SP = "15331f0e-bdc6-41e2-afa0-a4c9abfe90b3"


def _record(**fields: object) -> Record:
    return Record(id="a" * 32, service_principal_id=SP, caller="c", **fields)  # type: ignore[arg-type]


def test_every_step_of_every_action_has_permissions() -> None:
    for steps in ACTION_STEPS.values():
        assert all(STEP_PERMISSIONS[step] for step in steps)
    assert set(STEP_PERMISSIONS) == set(Step)


def test_a_pause_needs_only_the_sync_api() -> None:
    pause = _record(action="pause")
    assert steps_calling_graph(pause) == [Step.FIND_JOB, Step.PAUSE_JOB]
    assert missing_permissions(pause, ["Synchronization.ReadWrite.All"]) == {}
    assert set(missing_permissions(pause, [])) == {Step.FIND_JOB, Step.PAUSE_JOB}


def test_a_token_without_sync_roles_fails_fast_naming_what_is_missing() -> None:
    provision = _record()
    problem = token_lacks(("User.Read.All",), provision)
    assert problem is not None
    assert problem.code == "GraphPermissionMissing"
    assert "User.Read.All" in problem.message
    assert "create_job" in problem.message
    assert token_lacks(("Application.ReadWrite.OwnedBy",), provision) is None
    assert token_lacks(None, provision) is None  # unreadable roles: Graph's answers decide
    assert token_lacks(("User.Read.All",)) is not None  # start-up: the sync API at all


def test_onboarding_steps_name_what_each_needs_and_assign_needs_two() -> None:
    gallery = _record(
        application={"applicationTemplateId": SP, "displayName": "x"},
        assignments=[{"principalId": SP}],
    )
    sync_only = ("Synchronization.ReadWrite.All",)
    missing = missing_permissions(gallery, sync_only)
    assert set(missing) == {Step.INSTANTIATE_APP, Step.ASSIGN}
    # Graph's table: AppRoleAssignment.ReadWrite.All *and* Application.Read.All (or Directory)
    held = (*sync_only, "AppRoleAssignment.ReadWrite.All")
    assert missing_permissions(gallery, (*held, "Application.ReadWrite.OwnedBy")) == {
        Step.ASSIGN: [DIRECTORY_READ]
    }
    problem = token_lacks((*held, "Application.ReadWrite.OwnedBy"), gallery)
    assert problem is not None
    assert "assign needs one of Application.Read.All" in problem.message
    assert problem.details["needed"] == {"assign": list(DIRECTORY_READ)}
    assert token_lacks((*held, "Application.ReadWrite.All"), gallery) is None
    assert (
        token_lacks((*held, "Directory.Read.All", "Application.ReadWrite.OwnedBy"), gallery) is None
    )
