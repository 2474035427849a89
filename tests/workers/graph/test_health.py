"""Every Graph signal maps to the right health word, the worst first."""

from __future__ import annotations

from typing import Any

import pytest

from service.core.health import Health
from tests.workers.graph.test_models import GET_EXAMPLE
from workers.graph.health import assess, first_cycle_finished
from workers.graph.models import SynchronizationJob


def _job(schedule: str = "Active", **status: Any) -> SynchronizationJob:
    return SynchronizationJob.model_validate(
        {"id": "j", "schedule": {"state": schedule}, "status": status}
    )


def test_graphs_own_example_is_quarantined_though_its_code_says_paused() -> None:
    result = assess(SynchronizationJob.model_validate(GET_EXAMPLE))
    assert result.health is Health.QUARANTINED
    assert "EncounteredQuarantineException" in result.reason
    assert "SalesforceInvalidCredentials" in result.reason


@pytest.mark.parametrize(
    ("job", "health"),
    [
        (_job(code="Quarantine"), Health.QUARANTINED),
        (_job(code="Active", quarantine={"reason": "TooManyDeletes"}), Health.QUARANTINED),
        (_job("Disabled", code="NotRun"), Health.DISABLED),
        (_job("Paused", code="Paused"), Health.PAUSED),
        (_job(code="Paused"), Health.PAUSED),
        (_job(code="Active", lastExecution={"state": "Failed"}), Health.FAILING),
        (_job(code="Active", countSuccessiveCompleteFailures=3), Health.FAILING),
        (_job(code="NotRun"), Health.UNKNOWN),
        (_job(code="Active", lastExecution={"state": "Succeeded"}), Health.HEALTHY),
        (_job(code="Active"), Health.HEALTHY),
        (SynchronizationJob.model_validate({"id": "j"}), Health.UNKNOWN),
    ],
)
def test_signals(job: SynchronizationJob, health: Health) -> None:
    assert assess(job).health is health


def test_graphs_placeholder_after_start_is_not_a_failure() -> None:
    """After start Graph shows lastExecution Failed, timeBegan 0001-01-01, error code None."""
    placeholder = {
        "state": "Failed",
        "timeBegan": "0001-01-01T00:00:00Z",
        "timeEnded": "0001-01-01T00:00:00Z",
        "error": {"code": "None", "message": "", "tenantActionable": False},
    }
    job = _job(code="NotRun", lastExecution=placeholder)
    assert assess(job).health is Health.UNKNOWN
    assert not first_cycle_finished(job)
    real = {**placeholder, "timeBegan": "2026-01-01T00:00:00Z", "error": {"code": "E"}}
    assert assess(_job(code="Active", lastExecution=real)).health is Health.FAILING


def test_the_get_examples_blank_dates_parse() -> None:
    job = SynchronizationJob.model_validate(
        {
            "id": "j",
            "schedule": {"state": "Disabled"},
            "status": {
                "code": "Paused",
                "quarantine": {
                    "currentBegan": "",
                    "nextAttempt": "",
                    "reason": "",
                    "seriesBegan": "",
                    "seriesCount": 2,
                    "error": {"code": "SalesforceInvalidCredentials", "message": "invalid"},
                },
            },
        }
    )
    result = assess(job)
    assert result.health is Health.QUARANTINED
    assert "SalesforceInvalidCredentials" in result.reason


def _finished(entitled: int | None) -> SynchronizationJob:
    last: dict[str, Any] = {"state": "Succeeded", "timeEnded": "2026-12-01T10:00:00Z"}
    if entitled is not None:
        last["countEntitled"] = entitled
    return _job(code="Active", lastExecution=last)


def test_a_cycle_that_provisioned_nobody_is_failing_when_users_were_expected() -> None:
    verdict = assess(_finished(0), expects_users=True)
    assert verdict.health is Health.FAILING
    assert "provisioned nobody" in verdict.reason
    assert assess(_finished(3), expects_users=True).health is Health.HEALTHY
    assert assess(_finished(None), expects_users=True).health is Health.HEALTHY  # not reported
    assert assess(_finished(0)).health is Health.HEALTHY  # scope all / no assignments asked


def test_cycles_from_before_a_restart_say_nothing_about_it() -> None:
    """Verify after a restart or a credential rotation: the failed cycle that led to it is old."""
    from datetime import UTC, datetime

    failed_before = _job(
        code="Active",
        countSuccessiveCompleteFailures=1,
        lastExecution={
            "state": "Failed",
            "timeBegan": "2026-12-01T10:00:00Z",
            "timeEnded": "2026-12-01T10:01:00Z",
            "error": {"code": "SandboxInvalidCredentials"},
        },
    )
    restart = datetime(2026, 12, 1, 11, 0, tzinfo=UTC)
    assert assess(failed_before).health is Health.FAILING
    assert assess(failed_before, since=restart).health is not Health.FAILING
    early = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    assert assess(failed_before, since=early).health is Health.FAILING


def test_the_cycle_seen_before_a_restart_is_old_news_whatever_the_clocks() -> None:
    """``seen`` (the timeBegan Graph showed right before the restart, Graph's clock) tells the
    restart's cycles from older ones exactly, where ``since`` (our clock less a skew allowance)
    took a cycle that began a moment before the restart for its own (issue 12)."""
    from datetime import UTC, datetime, timedelta

    began = datetime(2026, 12, 1, 10, 0, 0, 300000, tzinfo=UTC)
    old = _job(
        code="Active",
        countSuccessiveCompleteFailures=1,
        lastExecution={
            "state": "Failed",
            "timeBegan": "2026-12-01T10:00:00.300Z",
            "timeEnded": "2026-12-01T10:00:00.500Z",
            "error": {"code": "SandboxInvalidCredentials"},
        },
    )
    since = began - timedelta(seconds=0.2)  # the restart 0.3 s later, less 0.5 s of skew
    assert assess(old, since=since).health is Health.FAILING  # the allowance's blind spot
    assert assess(old, since=since, seen=began).health is not Health.FAILING
    assert not first_cycle_finished(old, since, seen=began)
    earlier = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)  # seen before: the 10:00 cycle is new
    assert assess(old, since=since, seen=earlier).health is Health.FAILING
    assert first_cycle_finished(old, since, seen=earlier)
    none_before = datetime(1, 1, 1, tzinfo=UTC)  # the job showed no cycle before the start
    assert assess(old, seen=none_before).health is Health.FAILING


def test_a_quiet_incremental_cycle_of_a_job_that_provisions_its_users_is_not_failing() -> None:
    """``countEntitled`` counts the entries a cycle processed: an incremental cycle with no
    changes can read 0 while the job keeps its users in sync. Graph's other counts say so."""
    quiet: dict[str, Any] = {
        "state": "Succeeded",
        "timeEnded": "2026-12-01T10:40:00Z",
        "countEntitled": 0,
        "countExported": 0,
    }
    initial: dict[str, Any] = {
        "state": "Succeeded",
        "timeEnded": "2026-12-01T10:00:00Z",
        "countEntitled": 2,
        "countExported": 2,
    }
    synced = _job(
        code="Active",
        lastExecution=quiet,
        synchronizedEntryCountByType=[{"key": "user to user", "value": 2}],
    )
    assert assess(synced, expects_users=True).health is Health.HEALTHY
    exported = _job(code="Active", lastExecution=quiet, lastSuccessfulExecutionWithExports=initial)
    assert assess(exported, expects_users=True).health is Health.HEALTHY
    nobody = _job(
        code="Active",
        lastExecution=quiet,
        synchronizedEntryCountByType=[{"key": "user to user", "value": 0}],
        lastSuccessfulExecutionWithExports=None,
    )
    assert assess(nobody, expects_users=True).health is Health.FAILING
