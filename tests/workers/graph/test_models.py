"""Graph's synchronization resources parse from the documented shapes (the Get example)."""

from __future__ import annotations

from workers.graph.models import ODataError, SynchronizationJob, SynchronizationTemplate

# The body of Graph's own "Get synchronizationJob" example: quarantined, yet status.code Paused.
GET_EXAMPLE = {
    "id": "SfSandboxOutDelta.e4bbf44533ea4eabb17027f3a92e92aa",
    "templateId": "SfSandboxOutDelta",
    "schedule": {"expiration": None, "interval": "PT20M", "state": "Active"},
    "status": {
        "code": "Paused",
        "countSuccessiveCompleteFailures": 0,
        "escrowsPruned": False,
        "lastExecution": {
            "activityIdentifier": "31e6f4d5-1e7d-4f3d-9d73-4fcfb2a8cd37",
            "countEntitled": 0,
            "state": "Succeeded",
            "timeBegan": "2020-03-26T18:32:26.7498486Z",
            "timeEnded": "2020-03-26T18:32:28.1898426Z",
        },
        "quarantine": {
            "currentBegan": "2020-03-26T18:32:28.1898426Z",
            "nextAttempt": "2020-03-27T18:32:28.1898426Z",
            "reason": "EncounteredQuarantineException",
            "seriesBegan": "2020-03-26T18:32:28.1898426Z",
            "seriesCount": 1,
            "error": {
                "code": "SalesforceInvalidCredentials",
                "message": "The credentials are not valid.",
                "tenantActionable": True,
            },
        },
        "troubleshootingUrl": "",
    },
    "synchronizationJobSettings": [{"name": "QuarantineTooManyDeletesThreshold", "value": "500"}],
}


def test_the_documented_job_parses() -> None:
    job = SynchronizationJob.model_validate(GET_EXAMPLE)
    assert job.template_id == "SfSandboxOutDelta"
    assert job.schedule_state == "Active"
    assert job.status_code == "Paused"
    assert job.status.quarantine is not None
    assert job.status.quarantine.reason == "EncounteredQuarantineException"
    assert job.status.quarantine.error is not None
    assert job.status.quarantine.error.tenant_actionable is True
    assert job.status.last_execution is not None
    assert job.status.last_execution.state == "Succeeded"


def test_a_bare_job_has_empty_schedule_and_status() -> None:
    job = SynchronizationJob.model_validate({"id": "j"})
    assert job.schedule_state == ""
    assert job.status_code == ""
    assert job.status.quarantine is None


def test_templates_default_to_not_default() -> None:
    assert SynchronizationTemplate.model_validate({"id": "t"}).default is False
    assert SynchronizationTemplate.model_validate({"id": "t", "default": True}).default


def test_error_bodies_parse_and_odd_ones_are_empty() -> None:
    detail = ODataError.parse(
        {"error": {"code": "Throttled", "message": "slow", "innerError": {"request-id": "r"}}}
    )
    assert (detail.code, detail.message) == ("Throttled", "slow")
    assert detail.inner_error is not None
    assert detail.inner_error.request_id == "r"
    assert ODataError.parse("<html>").code is None
    assert ODataError.parse({"error": "text"}).code is None


def test_blank_timestamps_are_none() -> None:
    """Graph's examples send "" for timestamps that are not set."""
    job = SynchronizationJob.model_validate(
        {
            "id": "j",
            "status": {"quarantine": {"currentBegan": "", "nextAttempt": "", "reason": "x"}},
        }
    )
    assert job.status.quarantine is not None
    assert job.status.quarantine.current_began is None
