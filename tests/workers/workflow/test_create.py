"""The create_job step against the sandbox: an existing job adopted, a lost create answer never
duplicated."""

from __future__ import annotations

from service.core.models import Outcome, State
from tests.helpers.harness import (
    SALESFORCE,
    Harness,
    jobs_of,
)


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


async def test_lost_create_responses_never_duplicate(harness: Harness) -> None:
    harness.sandbox.patch_faults({"lost_create_rate": 1.0})
    done = await harness.run(SALESFORCE)
    assert done.state is State.SUCCEEDED, done.error
    assert any(h.outcome is Outcome.ADOPTED for h in done.history)
    assert len(jobs_of(harness.sandbox.stats(), SALESFORCE)) == 1
