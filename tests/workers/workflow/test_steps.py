"""The workflow's own steps against the sandbox through real arq workers: template resolution,
secrets saved and validated, start and verify."""

from __future__ import annotations

from service.core.models import State
from tests.helpers.harness import (
    GITHUB,
    NO_TEMPLATES,
    SALESFORCE,
    SCIM,
    Harness,
    jobs_of,
)


async def test_default_template_is_chosen(harness: Harness) -> None:
    done = await harness.run(SCIM)
    assert done.state is State.SUCCEEDED, done.error
    assert done.template_id == "scimV2"


async def test_unknown_template_fails_listing_what_exists(harness: Harness) -> None:
    done = await harness.run(SCIM, template="nope")
    assert done.state is State.FAILED
    assert done.error is not None
    assert done.error.code == "TemplateNotFound"
    assert done.error.details["available"] == ["scim", "scimV2"]
    assert done.error.graph_request_id
    assert jobs_of(harness.sandbox.stats(), SCIM) == []


async def test_several_templates_without_default_is_ambiguous(harness: Harness) -> None:
    done = await harness.run(GITHUB)
    assert done.state is State.FAILED
    assert done.error is not None
    assert done.error.code == "TemplateAmbiguous"
    assert sorted(done.error.details["available"]) == [
        "gitHubEnterpriseCloud",
        "gitHubEnterpriseManagedUser",
    ]
    assert jobs_of(harness.sandbox.stats(), GITHUB) == []


async def test_no_templates_fails_clearly(harness: Harness) -> None:
    done = await harness.run(NO_TEMPLATES)
    assert done.error is not None
    assert done.error.code == "TemplateNotFound"


async def test_credentials_saved_then_deleted_from_redis(harness: Harness) -> None:
    secret = "s3cr3t-token-value-123"
    done = await harness.run(
        SALESFORCE, credentials={"BaseAddress": "https://scim.example/v2", "SecretToken": secret}
    )
    assert done.state is State.SUCCEEDED, done.error
    assert harness.sandbox.stats()["secrets"][SALESFORCE] == 1
    assert await harness.store.credentials(done.id) is None
    for key in await harness.store.redis.keys("*"):
        kind = await harness.store.redis.type(key)
        if kind == b"string":
            assert secret.encode() not in (await harness.store.redis.get(key) or b"")


async def test_rejected_credentials_fail_without_starting(harness: Harness) -> None:
    done = await harness.run(SALESFORCE, credentials={"SecretToken": "sandbox:reject"})
    assert done.state is State.FAILED
    assert done.error is not None
    assert done.error.code == "CredentialsRejected"
    assert done.error.graph_status == 400
    stats = harness.sandbox.stats()
    [job] = jobs_of(stats, SALESFORCE)
    assert stats["starts"].get(job["id"], 0) == 0
    assert await harness.store.credentials(done.id) is None


async def test_quarantine_after_start_fails_with_reason(harness: Harness) -> None:
    done = await harness.run(SALESFORCE, credentials={"SecretToken": "x-sandbox:quarantine"})
    assert done.state is State.FAILED
    assert done.error is not None
    assert done.error.code == "JobQuarantined"
    assert done.error.details["reason"]
    assert done.error.details["tenantActionable"] is True


async def test_start_false_creates_but_does_not_start(harness: Harness) -> None:
    done = await harness.run(SALESFORCE, start=False)
    assert done.state is State.SUCCEEDED
    stats = harness.sandbox.stats()
    [job] = jobs_of(stats, SALESFORCE)
    assert stats["starts"].get(job["id"], 0) == 0


async def test_job_that_never_leaves_not_run_counts_as_started_after_settling(
    harness: Harness,
) -> None:
    harness.sandbox.patch_faults({"activation_delay_ms": 600_000})
    done = await harness.run(SALESFORCE)
    assert done.state is State.SUCCEEDED, done.error
    assert "first cycle is not finished yet" in (done.history[-1].message or "")
