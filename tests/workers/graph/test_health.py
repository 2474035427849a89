"""Every Graph signal maps to the right health word, the worst first."""

from __future__ import annotations

from typing import Any

import pytest

from service.core.health import Health
from tests.workers.graph.test_models import GET_EXAMPLE
from workers.graph.health import assess
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
