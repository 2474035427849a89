"""Pure models: seed loading, tenant state transitions, fault decisions."""

from __future__ import annotations

import random
import uuid
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from sandbox.faults import FaultEngine, FaultProfile, format_retry_after
from sandbox.models import CycleRules, GraphError
from sandbox.seed import generated_principal_id, load_seed
from sandbox.state import TenantState

TENANT = "5f0c1e8a-7d2b-4e6f-9a1c-3b8d5e2f4a60"
SALESFORCE = "15331f0e-bdc6-41e2-afa0-a4c9abfe90b3"
SCIM = "cbe29441-8636-4563-a4a8-c390c0e83cb4"
GITHUB = "01d564d9-8163-464e-bc90-b017bf5c8fa6"
SLACK_NEW = "09bbdc7e-84d7-49a3-8f8d-3d7ffd3cb86a"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_default_seed_has_documented_ids() -> None:
    seed = load_seed()
    assert seed.tenantId == TENANT
    by_id = {p.id: p for p in seed.servicePrincipals}
    assert [t.id for t in by_id[SALESFORCE].templates] == ["salesforce"]
    assert [(t.id, t.default) for t in by_id[SCIM].templates] == [
        ("scim", False),
        ("scimV2", True),
    ]
    assert not any(t.default for t in by_id[GITHUB].templates)
    assert len(by_id[GITHUB].templates) == 2
    assert by_id[SLACK_NEW].newForMs == 3000
    roles = {a.clientId: a.roles for a in seed.applications}
    assert roles["e2ae45db-2954-4e51-a7e6-3f3a57ae4b50"] == ["Synchronization.Read.All"]
    assert [a.certificate for a in seed.applications].count("generated") == 1


def test_seed_from_yaml_and_generated_principals(tmp_path: Path) -> None:
    path = tmp_path / "seed.yaml"
    path.write_text(
        f"tenantId: {TENANT}\n"
        "applications: [{clientId: 7d9c0e36-5c1f-4f57-8d0c-0f2f5d1f0b11, clientSecret: s}]\n"
        "generate: {count: 60}\n"
    )
    seed = load_seed(path)
    principals = seed.all_principals()
    assert len(principals) == 60
    assert principals[7].id == str(uuid.uuid5(uuid.UUID(TENANT), "generated-principal-7"))
    assert principals[7].id == generated_principal_id(TENANT, 7)
    assert principals[0].templates[0].id == "scim"


def test_seed_rejects_bad_input() -> None:
    with pytest.raises(ValidationError):
        load_seed({"tenantId": "not-a-guid"})
    with pytest.raises(ValidationError):
        load_seed(
            {
                "tenantId": TENANT,
                "servicePrincipals": [
                    {
                        "id": SCIM,
                        "templates": [{"id": "a", "default": True}, {"id": "b", "default": True}],
                    }
                ],
            }
        )


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


def test_secrets_masking_reject_and_bad_keys() -> None:
    state = TenantState(load_seed(), clock=Clock())
    state.save_secrets(SCIM, [("BaseAddress", "https://a"), ("SecretToken", "abc")])
    assert state.get_secrets(SCIM) == [
        {"key": "BaseAddress", "value": "https://a"},
        {"key": "SecretToken", "value": "*"},
    ]
    state.save_secrets(SCIM, [("SecretToken", "")])  # empty value deletes (as Terraform does)
    assert [s["key"] for s in state.get_secrets(SCIM)] == ["BaseAddress"]
    with pytest.raises(GraphError):
        state.validate_credentials(SCIM, [("SecretToken", "sandbox:reject")], use_saved=False)
    with pytest.raises(GraphError):
        state.save_secrets(SCIM, [("NotAKey", "x")])
    assert state.stats.secrets[SCIM] == 2


def test_profile_merge_and_validation() -> None:
    profile = FaultProfile.model_validate({"errors": {"*": {"429": 0.1}}})
    merged = profile.merged({"errors": {"jobs.create": {"500": 0.2}}, "page_size": 3})
    assert merged.error_rates("jobs.create") == {429: 0.1, 500: 0.2}
    assert merged.error_rates("token") == {}
    assert merged.merged({"errors": {"*": None}}).error_rates("jobs.get") == {}
    with pytest.raises(ValidationError):
        FaultProfile.model_validate({"errors": {"jobs.nope": {"500": 0.1}}})
    with pytest.raises(ValidationError):
        FaultProfile.model_validate({"errors": {"*": {"500": 0.6, "503": 0.6}}})
    with pytest.raises(ValidationError):
        FaultProfile.model_validate({"errors": {"*": {"404": 0.1}}})
    with pytest.raises(ValidationError):
        FaultProfile.model_validate({"no_such_field": 1})


def test_retry_after_styles() -> None:
    now = 1_700_000_000.25
    assert format_retry_after("integer", 1.2, now) == "2"
    assert format_retry_after("decimal", 2.128, now) == "2.128"
    assert format_retry_after("absent", 2, now) is None
    date = format_retry_after("http-date", 1.5, now)
    assert date is not None
    assert parsedate_to_datetime(date).timestamp() == 1_700_000_002  # rounded up


def test_engine_rate_limit_window_and_mixed_styles() -> None:
    clock = Clock()
    profile = FaultProfile(rate_limit=3, rate_window_s=2.0, retry_after_style="mixed")
    engine = FaultEngine(profile, rng=random.Random(1), clock=clock, wall_clock=lambda: 0.0)
    assert [engine.rate_limited("t") for _ in range(3)] == [None, None, None]
    assert engine.rate_limited("t") == pytest.approx(2.0)
    assert engine.rate_limited("other") is None  # per tenant
    clock.t += 1.5
    assert engine.rate_limited("t") == pytest.approx(0.5)
    clock.t += 0.5
    assert engine.rate_limited("t") is None
    styles = [engine.retry_after(1.0) for _ in range(4)]
    assert styles[0] == "1"
    assert styles[1] == "1.000"
    assert styles[3] is None
    assert styles[2] is not None
    assert styles[2].endswith("GMT")


def test_engine_start_conflicts_per_job() -> None:
    engine = FaultEngine(FaultProfile(start_conflicts=2), clock=Clock(), wall_clock=lambda: 0.0)
    assert [engine.start_conflict("a") for _ in range(3)] == [True, True, False]
    assert engine.start_conflict("b") is True


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
    user = "7b2d5c1e-0000-4000-8000-000000000001"
    body = {"principalId": user, "resourceId": SALESFORCE, "appRoleId": str(uuid.UUID(int=0))}
    state.gallery.assignments.add(SALESFORCE, "Salesforce", "app", [], body)
    clock.t += 5.0
    assert state.job(SALESFORCE, job.id).last_execution["countEntitled"] == 1  # type: ignore[index]
    state.save_secrets(SALESFORCE, [("SyncAll", "true")])
    clock.t += 5.0
    entitled = state.job(SALESFORCE, job.id).last_execution["countEntitled"]  # type: ignore[index]
    assert entitled == DIRECTORY_USERS
