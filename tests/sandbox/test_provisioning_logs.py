"""The sandbox's provisioning logs, pure: what each cycle logs, the escrow retries of
incremental cycles, the documented ``$filter`` and the control of per-object outcomes."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from sandbox.cycles import DIRECTORY_USERS
from sandbox.models import CycleRules, GraphError
from sandbox.seed import load_seed
from sandbox.state import TenantState

SALESFORCE = "15331f0e-bdc6-41e2-afa0-a4c9abfe90b3"
SCIM = "cbe29441-8636-4563-a4a8-c390c0e83cb4"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _assign(state: TenantState, sp: str, principal: str) -> None:
    body = {"principalId": principal, "resourceId": sp, "appRoleId": str(uuid.UUID(int=0))}
    state.gallery.assignments.add(sp, "app", "app", [], body)


def _started(state: TenantState, clock: Clock, sp: str, template: str) -> str:
    job = state.create_job(sp, template, initial_status="NotConfigured")
    state.start_job(sp, job.id, rules=CycleRules(first_cycle_s=1.0, cycle_s=5.0))
    return job.id


def test_the_initial_cycle_logs_every_object_in_scope_then_only_escrows() -> None:
    clock = Clock()
    state = TenantState(load_seed(), clock=clock)
    users = [str(uuid.UUID(int=n + 1)) for n in range(4)]
    for user in users:
        _assign(state, SALESFORCE, user)
    state.logs.control({"failures": {users[0]: "duplicate userName"}, "skipped": [users[1]]})
    job_id = _started(state, clock, SALESFORCE, "salesforce")
    clock.t += 1.0
    execution = state.job(SALESFORCE, job_id).last_execution
    assert execution is not None
    first = state.logs.select(f"jobId eq '{job_id}'")
    assert len(first) == 4
    assert len({e["cycleId"] for e in first}) == 1
    assert Counter(e["provisioningStatusInfo"]["status"] for e in first) == {
        "success": 2,
        "failure": 1,
        "skipped": 1,
    }
    failed = next(e for e in first if e["provisioningStatusInfo"]["status"] == "failure")
    assert failed["sourceIdentity"]["id"] == users[0]
    info = failed["provisioningStatusInfo"]["errorInformation"]
    assert (info["errorCode"], info["reason"]) == ("SandboxEntryExportFailed", "duplicate userName")
    assert [s["status"] for s in failed["provisioningSteps"]] == ["success", "failure"]
    # every entry lies within the cycle's own times
    times = sorted(e["activityDateTime"] for e in first)
    assert execution["timeBegan"] < times[0]
    assert times[-1] < execution["timeEnded"]

    state.logs.control({})  # the failure is fixed: the next (incremental) cycle retries it
    clock.t += 5.0
    state.job(SALESFORCE, job_id)
    second = [e for e in state.logs.select(f"jobId eq '{job_id}'") if e not in first]
    assert [(e["sourceIdentity"]["id"], e["provisioningStatusInfo"]["status"]) for e in second] == [
        (users[0], "success")
    ]
    clock.t += 5.0
    state.job(SALESFORCE, job_id)
    assert len(state.logs.select(f"jobId eq '{job_id}'")) == 5  # nothing left to retry


def test_sync_all_logs_the_whole_directory_and_a_restart_is_an_initial_cycle_again() -> None:
    clock = Clock()
    state = TenantState(load_seed(), clock=clock)
    state.save_secrets(SCIM, [("SyncAll", "true")])
    job_id = _started(state, clock, SCIM, "scim")
    clock.t += 1.0
    state.job(SCIM, job_id)
    assert len(state.logs.entries) == DIRECTORY_USERS
    state.restart_job(SCIM, job_id, "Watermark", rules=CycleRules(first_cycle_s=1.0))
    clock.t += 1.0
    state.job(SCIM, job_id)
    cycles = Counter(e["cycleId"] for e in state.logs.select(f"jobId eq '{job_id}'"))
    assert sorted(cycles.values()) == [DIRECTORY_USERS, DIRECTORY_USERS]


def test_a_quarantined_cycle_logs_nothing() -> None:
    clock = Clock()
    state = TenantState(load_seed(), clock=clock)
    _assign(state, SALESFORCE, str(uuid.UUID(int=9)))
    state.save_secrets(SALESFORCE, [("SecretToken", "sandbox:quarantine")])
    job_id = _started(state, clock, SALESFORCE, "salesforce")
    clock.t += 1.0
    assert state.job(SALESFORCE, job_id).quarantine is not None
    assert state.logs.entries == []


def test_the_filter_takes_the_documented_operators_case_sensitively() -> None:
    clock = Clock()
    state = TenantState(load_seed(), clock=clock)
    _assign(state, SALESFORCE, str(uuid.UUID(int=1)))
    _assign(state, SCIM, str(uuid.UUID(int=2)))
    sf = _started(state, clock, SALESFORCE, "salesforce")
    scim = _started(state, clock, SCIM, "scim")
    clock.t += 1.0
    state.job(SALESFORCE, sf), state.job(SCIM, scim)
    [entry] = state.logs.select(f"jobId eq '{sf}'")
    at = entry["activityDateTime"]
    assert state.logs.select(f"jobId eq '{sf.upper()}'") == []  # case sensitive
    assert len(state.logs.select("contains(jobId, 'scim.')")) == 1
    assert state.logs.select(f"jobId eq '{sf}' and activityDateTime gt {at}") == []
    assert state.logs.select(f"jobId eq '{sf}' and activityDateTime lt {at}") == []
    assert state.logs.select(f"activityDateTime eq {at}") == [entry]
    assert state.logs.select(f"cycleId eq '{entry['cycleId']}'") == [entry]
    assert len(state.logs.select(None)) == 2
    for bad in (
        "jobId ne 'x'",
        "durationInMilliseconds gt 5",
        "jobId eq x",
        "activityDateTime gt soon",
    ):
        with pytest.raises(GraphError) as err:
            state.logs.select(bad)
        assert err.value.status == 400


def test_the_control_rejects_malformed_outcomes() -> None:
    state = TenantState(load_seed(), clock=Clock())
    for body in ([], {"failures": ["a"]}, {"failures": {"a": 1}}, {"skipped": "a"}):
        with pytest.raises(ValueError, match="must"):
            state.logs.control(body)
    assert state.logs.control({"failures": {"A": "why"}, "skipped": ["B"]}) == {
        "failures": {"a": "why"},
        "skipped": ["b"],
        "entries": 0,
    }
