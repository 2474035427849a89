"""The workflow against the real sandbox, through real arq workers and real msal."""

from __future__ import annotations

from typing import Any

from service.core.models import Outcome, State, Step
from tests.helpers.harness import (
    GITHUB,
    NO_TEMPLATES,
    OWNED_BY_CLIENT,
    READ_ONLY_CLIENT,
    SALESFORCE,
    SCIM,
    SLACK_NEW,
    Harness,
    worker_settings,
)


def jobs_of(stats: dict[str, Any], sp: str) -> list[dict[str, Any]]:
    return list(stats["jobs"].get(sp, []))


async def test_happy_path_creates_and_starts_one_job(harness: Harness) -> None:
    rec = await harness.submit(SALESFORCE)
    await harness.drain()
    done = await harness.get(rec.id)
    assert done.state is State.SUCCEEDED, done.error
    assert done.template_id == "salesforce"
    assert done.job_id
    assert done.job_id.startswith("salesforce.")
    steps = [(h.step, h.outcome) for h in done.history]
    assert (Step.RESOLVE_TEMPLATE, Outcome.SUCCEEDED) in steps
    assert (Step.CREATE_JOB, Outcome.SUCCEEDED) in steps
    assert (Step.SAVE_SECRETS, Outcome.SKIPPED) in steps
    assert (Step.START_JOB, Outcome.SUCCEEDED) in steps
    assert (Step.VERIFY, Outcome.SUCCEEDED) in steps
    assert all(h.graph_request_id for h in done.history if h.outcome is Outcome.SUCCEEDED)
    stats = harness.sandbox.stats()
    [job] = jobs_of(stats, SALESFORCE)
    assert job["id"] == done.job_id
    assert stats["starts"][done.job_id] == 1


async def test_default_template_is_chosen(harness: Harness) -> None:
    rec = await harness.submit(SCIM)
    await harness.drain()
    done = await harness.get(rec.id)
    assert done.state is State.SUCCEEDED, done.error
    assert done.template_id == "scimV2"


async def test_unknown_template_fails_listing_what_exists(harness: Harness) -> None:
    rec = await harness.submit(SCIM, template="nope")
    await harness.drain()
    done = await harness.get(rec.id)
    assert done.state is State.FAILED
    assert done.error is not None
    assert done.error.code == "TemplateNotFound"
    assert done.error.details["available"] == ["scim", "scimV2"]
    assert done.error.graph_request_id
    assert jobs_of(harness.sandbox.stats(), SCIM) == []


async def test_several_templates_without_default_is_ambiguous(harness: Harness) -> None:
    rec = await harness.submit(GITHUB)
    await harness.drain()
    done = await harness.get(rec.id)
    assert done.state is State.FAILED
    assert done.error is not None
    assert done.error.code == "TemplateAmbiguous"
    assert sorted(done.error.details["available"]) == [
        "gitHubEnterpriseCloud",
        "gitHubEnterpriseManagedUser",
    ]
    assert jobs_of(harness.sandbox.stats(), GITHUB) == []


async def test_no_templates_fails_clearly(harness: Harness) -> None:
    rec = await harness.submit(NO_TEMPLATES)
    await harness.drain()
    done = await harness.get(rec.id)
    assert done.error is not None
    assert done.error.code == "TemplateNotFound"


async def test_credentials_saved_then_deleted_from_redis(harness: Harness) -> None:
    secret = "s3cr3t-token-value-123"
    rec = await harness.submit(
        SALESFORCE, credentials={"BaseAddress": "https://scim.example/v2", "SecretToken": secret}
    )
    await harness.drain()
    done = await harness.get(rec.id)
    assert done.state is State.SUCCEEDED, done.error
    assert harness.sandbox.stats()["secrets"][SALESFORCE] == 1
    assert await harness.store.credentials(rec.id) is None
    for key in await harness.store.redis.keys("*"):
        kind = await harness.store.redis.type(key)
        if kind == b"string":
            assert secret.encode() not in (await harness.store.redis.get(key) or b"")


async def test_rejected_credentials_fail_without_starting(harness: Harness) -> None:
    rec = await harness.submit(SALESFORCE, credentials={"SecretToken": "sandbox:reject"})
    await harness.drain()
    done = await harness.get(rec.id)
    assert done.state is State.FAILED
    assert done.error is not None
    assert done.error.code == "CredentialsRejected"
    assert done.error.graph_status == 400
    stats = harness.sandbox.stats()
    [job] = jobs_of(stats, SALESFORCE)
    assert stats["starts"].get(job["id"], 0) == 0
    assert await harness.store.credentials(rec.id) is None


async def test_quarantine_after_start_fails_with_reason(harness: Harness) -> None:
    rec = await harness.submit(SALESFORCE, credentials={"SecretToken": "x-sandbox:quarantine"})
    await harness.drain()
    done = await harness.get(rec.id)
    assert done.state is State.FAILED
    assert done.error is not None
    assert done.error.code == "JobQuarantined"
    assert done.error.details["reason"]
    assert done.error.details["tenantActionable"] is True


async def test_existing_job_is_adopted_not_duplicated(harness: Harness) -> None:
    first = await harness.submit(SALESFORCE, start=False)
    await harness.drain()
    assert (await harness.get(first.id)).state is State.SUCCEEDED
    second = await harness.submit(SALESFORCE)
    await harness.drain()
    done = await harness.get(second.id)
    assert done.state is State.SUCCEEDED, done.error
    assert any(h.outcome is Outcome.ADOPTED for h in done.history)
    stats = harness.sandbox.stats()
    [job] = jobs_of(stats, SALESFORCE)
    assert stats["starts"][job["id"]] == 1


async def test_start_false_creates_but_does_not_start(harness: Harness) -> None:
    rec = await harness.submit(SALESFORCE, start=False)
    await harness.drain()
    done = await harness.get(rec.id)
    assert done.state is State.SUCCEEDED
    stats = harness.sandbox.stats()
    [job] = jobs_of(stats, SALESFORCE)
    assert stats["starts"].get(job["id"], 0) == 0


async def test_lost_create_responses_never_duplicate(harness: Harness) -> None:
    harness.sandbox.patch_faults({"lost_create_rate": 1.0})
    rec = await harness.submit(SALESFORCE)
    await harness.drain()
    done = await harness.get(rec.id)
    assert done.state is State.SUCCEEDED, done.error
    assert any(h.outcome is Outcome.ADOPTED for h in done.history)
    assert len(jobs_of(harness.sandbox.stats(), SALESFORCE)) == 1


async def test_new_principal_unknown_error_is_waited_out(harness: Harness) -> None:
    rec = await harness.submit(SLACK_NEW)
    await harness.drain()
    done = await harness.get(rec.id)
    assert done.state is State.SUCCEEDED, done.error
    assert harness.sandbox.stats()["faults"].get("new_principal", 0) > 0


async def test_throttling_replication_lag_and_conflicts_are_retried(harness: Harness) -> None:
    harness.sandbox.patch_faults(
        {
            "errors": {"*": {"429": 0.2, "503": 0.1}},
            "retry_after_style": "mixed",
            "retry_after_s": 0.2,
            "replication_lag_ms": 300,
            "start_conflicts": 2,
            "page_size": 1,
        }
    )
    recs = [await harness.submit(sp) for sp in (SALESFORCE, SCIM)]
    await harness.drain()
    for rec in recs:
        done = await harness.get(rec.id)
        assert done.state is State.SUCCEEDED, done.error
    stats = harness.sandbox.stats()
    assert len(jobs_of(stats, SALESFORCE)) == 1
    assert len(jobs_of(stats, SCIM)) == 1
    assert stats["faults"].get("start_conflict", 0) >= 1


async def test_missing_permission_fails_fast_naming_what_is_needed(
    harness: Harness, redis_url: str
) -> None:
    client_id, secret = READ_ONLY_CLIENT
    harness.settings = worker_settings(
        harness.sandbox,
        redis_url,
        queue_name=harness.settings.queue_name,
        client_id=client_id,
        client_secret=secret,
    )
    rec = await harness.submit(SALESFORCE)
    await harness.drain()
    done = await harness.get(rec.id)
    assert done.state is State.FAILED
    assert done.error is not None
    assert done.error.code == "GraphPermissionMissing"
    assert "Synchronization.ReadWrite.All" in done.error.message
    assert done.error.details["tokenRoles"] == ["Synchronization.Read.All"]
    assert done.attempts == 1
    graph_calls = {r: c for r, c in harness.sandbox.stats()["calls"].items() if r != "token"}
    assert graph_calls == {}  # not one Graph call was made


async def test_owned_by_on_a_principal_not_owned_ends_with_the_ownership_hint(
    harness: Harness, redis_url: str
) -> None:
    harness.settings = worker_settings(
        harness.sandbox,
        redis_url,
        queue_name=harness.settings.queue_name,
        client_id=OWNED_BY_CLIENT[0],
        client_secret=OWNED_BY_CLIENT[1],
        consistency_budget_s=1.0,
    )
    owned, not_owned = await harness.submit(SALESFORCE), await harness.submit(SCIM)
    await harness.drain()
    assert (await harness.get(owned.id)).state is State.SUCCEEDED
    done = await harness.get(not_owned.id)
    assert done.state is State.FAILED
    assert done.error is not None
    assert done.error.code == "GraphPermissionMissing"
    assert done.error.graph_status == 401
    assert "owner of service principal" in done.error.message


async def test_bad_client_secret_fails_with_token_error(harness: Harness, redis_url: str) -> None:
    harness.settings = worker_settings(
        harness.sandbox,
        redis_url,
        queue_name=harness.settings.queue_name,
        client_secret="wrong-secret",
    )
    rec = await harness.submit(SALESFORCE)
    await harness.drain()
    done = await harness.get(rec.id)
    assert done.state is State.FAILED
    assert done.error is not None
    assert done.error.code == "TokenAcquisitionFailed"
    assert "wrong-secret" not in done.error.message


async def test_unknown_principal_fails_at_once(harness: Harness) -> None:
    rec = await harness.submit("0b5e2c7a-1111-4222-8333-944455556666")
    await harness.drain()
    done = await harness.get(rec.id)
    assert done.state is State.FAILED
    assert done.error is not None
    assert done.error.code == "Request_ResourceNotFound"
    assert done.error.graph_status == 404
    assert done.attempts == 1


async def test_job_that_never_leaves_not_run_counts_as_started_after_settling(
    harness: Harness,
) -> None:
    harness.sandbox.patch_faults({"activation_delay_ms": 600_000})
    rec = await harness.submit(SALESFORCE)
    await harness.drain()
    done = await harness.get(rec.id)
    assert done.state is State.SUCCEEDED, done.error
    assert "first cycle is not finished yet" in (done.history[-1].message or "")
