"""The workflow against the real sandbox, through real arq workers and real msal."""

from __future__ import annotations

from typing import Any

from service.core.models import Outcome, State, Step
from tests.helpers.harness import (
    OWNED_BY_CLIENT,
    READ_ONLY_CLIENT,
    SALESFORCE,
    SCIM,
    SLACK_NEW,
    Harness,
    jobs_of,
    worker_settings,
)
from workers.workflow.steps import NO_CYCLE


async def test_happy_path_creates_and_starts_one_job(harness: Harness) -> None:
    done = await harness.run(SALESFORCE)
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


def graph_calls(stats: dict[str, Any]) -> dict[str, int]:
    """Graph calls answered so far, by route (the token endpoint left out)."""
    return {r: sum(by.values()) for r, by in stats["calls"].items() if r != "token"}


async def test_happy_path_takes_five_graph_calls_including_verify(harness: Harness) -> None:
    harness.sandbox.patch_faults({"activation_delay_ms": 0})  # verify's first GET suffices
    before = graph_calls(harness.sandbox.stats())
    done = await harness.run(SALESFORCE)
    assert done.state is State.SUCCEEDED, done.error
    after = graph_calls(harness.sandbox.stats())
    made = {r: n - before.get(r, 0) for r, n in after.items() if n != before.get(r, 0)}
    # the create answer is the job: no GET of it before the start, one after it (verify's)
    assert made == {
        "templates.list": 1,
        "jobs.list": 1,
        "jobs.create": 1,
        "jobs.start": 1,
        "jobs.get": 1,
    }
    assert done.cycles_seen == {"start_job": NO_CYCLE}
    # Each save before a call took that call's throttle slot in its own round trip (the run's
    # start, resolve_template's, create_job's, start_job's); the create POST, after the note
    # written under the claim, asks alone (and a slot gone stale on a busy machine is asked
    # for again).
    throttle = harness.last_deps.throttle
    assert throttle.takes_ahead == 4
    assert 1 <= throttle.takes <= 5


async def test_an_adopted_running_job_is_read_and_not_started_again(harness: Harness) -> None:
    harness.sandbox.patch_faults({"activation_delay_ms": 0})
    first = await harness.run(SALESFORCE)
    assert first.state is State.SUCCEEDED, first.error
    done = await harness.run(SALESFORCE)
    assert done.state is State.SUCCEEDED, done.error
    [start] = [h for h in done.history if h.step is Step.START_JOB]
    assert start.outcome is Outcome.SKIPPED
    assert (start.message or "").startswith("already Active")
    stats = harness.sandbox.stats()
    [job] = jobs_of(stats, SALESFORCE)
    assert stats["starts"][job["id"]] == 1


async def test_new_principal_unknown_error_is_waited_out(harness: Harness) -> None:
    done = await harness.run(SLACK_NEW)
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
    done = await harness.run(SALESFORCE)
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
    done = await harness.run(SALESFORCE)
    assert done.state is State.FAILED
    assert done.error is not None
    assert done.error.code == "TokenAcquisitionFailed"
    assert "wrong-secret" not in done.error.message


async def test_unknown_principal_fails_at_once(harness: Harness) -> None:
    done = await harness.run("0b5e2c7a-1111-4222-8333-944455556666")
    assert done.state is State.FAILED
    assert done.error is not None
    assert done.error.code == "Request_ResourceNotFound"
    assert done.error.graph_status == 404
    assert done.attempts == 1
