"""A started job's cycles in the pure tenant state: activation, quarantine, what a cycle counts."""

from __future__ import annotations

import uuid

import pytest

from sandbox.models import CycleRules, GraphError
from sandbox.seed import load_seed
from sandbox.state import TenantState
from tests.helpers.harness import SALESFORCE, SCIM, TENANT
from tests.helpers.sandbox import Clock


def test_job_lifecycle_and_activation_delay() -> None:
    clock = Clock()
    state = TenantState(load_seed(), clock=clock)
    job = state.create_job(SALESFORCE, "salesforce", initial_status="NotConfigured")
    template, middle, guid = job.id.split(".")
    assert template == "salesforce"
    assert middle == uuid.UUID(TENANT).hex
    uuid.UUID(guid)
    assert (job.schedule_state, job.status_code) == ("Disabled", "NotConfigured")
    state.start_job(SALESFORCE, job.id, rules=CycleRules(first_cycle_s=1.0))
    assert (job.schedule_state, job.status_code) == ("Active", "NotRun")
    clock.t += 1.0
    assert state.job(SALESFORCE, job.id).status_code == "Active"
    state.pause_job(SALESFORCE, job.id)
    assert (job.schedule_state, job.status_code) == ("Paused", "Paused")
    state.start_job(SALESFORCE, job.id, rules=CycleRules(first_cycle_s=0))
    assert job.status_code == "Active"
    assert state.stats.starts[job.id] == 2
    state.delete_job(SALESFORCE, job.id)
    with pytest.raises(GraphError) as err:
        state.job(SALESFORCE, job.id)
    assert err.value.status == 404


def test_quarantine_after_bad_secrets() -> None:
    clock = Clock()
    state = TenantState(load_seed(), clock=clock)
    state.save_secrets(
        SCIM, [("BaseAddress", "https://x"), ("SecretToken", "t sandbox:quarantine")]
    )
    state.validate_credentials(SCIM, [], use_saved=True)  # validates fine
    job = state.create_job(SCIM, "scimV2", initial_status="Paused")
    state.start_job(SCIM, job.id, rules=CycleRules(first_cycle_s=0.5))
    assert job.status_code == "NotRun"
    clock.t += 0.5
    body = state.job(SCIM, job.id).to_json()
    assert body["schedule"]["state"] == "Active"
    assert body["status"]["code"] == "Quarantine"
    quarantine = body["status"]["quarantine"]
    assert quarantine["error"]["tenantActionable"] is True
    assert quarantine["reason"] == "EncounteredQuarantineException"


def test_a_cycle_counts_the_assigned_or_the_whole_directory() -> None:
    """countEntitled: one per assignment, the whole directory with SyncAll true, 0 when
    nobody is assigned (what the health watch reads as "provisioned nobody")."""
    from sandbox.cycles import DIRECTORY_USERS

    clock = Clock()
    state = TenantState(load_seed(), clock=clock)
    job = state.create_job(SALESFORCE, "salesforce", initial_status="NotConfigured")
    state.start_job(SALESFORCE, job.id, rules=CycleRules(first_cycle_s=1.0, cycle_s=5.0))
    clock.t += 1.0
    last = state.job(SALESFORCE, job.id).last_execution
    assert last is not None
    assert (last["state"], last["countEntitled"]) == ("Succeeded", 0)
    assert state.job(SALESFORCE, job.id).to_json()["status"]["synchronizedEntryCountByType"] == []
    user = "7b2d5c1e-0000-4000-8000-000000000001"
    body = {"principalId": user, "resourceId": SALESFORCE, "appRoleId": str(uuid.UUID(int=0))}
    state.gallery.assignments.add(SALESFORCE, "Salesforce", "app", [], body)
    clock.t += 5.0
    assert state.job(SALESFORCE, job.id).last_execution["countEntitled"] == 1  # type: ignore[index]
    status = state.job(SALESFORCE, job.id).to_json()["status"]
    assert status["synchronizedEntryCountByType"] == [{"key": "User", "value": 1}]
    state.save_secrets(SALESFORCE, [("SyncAll", "true")])
    clock.t += 5.0
    entitled = state.job(SALESFORCE, job.id).last_execution["countEntitled"]  # type: ignore[index]
    assert entitled == DIRECTORY_USERS
