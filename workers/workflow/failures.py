"""How a run's end reads: the failure a Graph or token error, or a job that verify finds
quarantined or failing, becomes (code, message and Graph's ids, for the record and the
caller) and the cancelled line, which says what stays in the tenant. Kept apart from the run
loop so the API, the CLI and the tests word an end the same way the worker does."""

from __future__ import annotations

from service.core.errors import (
    GraphFailure,
    GraphRequestFailed,
    JobFailing,
    JobQuarantined,
    TokenError,
    WorkflowFailed,
)
from service.core.models import Outcome, Record, Step
from workers.graph.models import SynchronizationJob
from workers.graph.response import GraphResponse


def cancel_message(record: Record) -> str:
    """The cancelled history line, saying what stays in the tenant: cancel stops this
    request, it does not stop or delete a job (pause or delete it in Entra if needed)."""
    started = any(
        h.step is Step.START_JOB
        and (
            h.outcome is Outcome.SUCCEEDED
            or (h.outcome is Outcome.SKIPPED and (h.message or "").startswith("already"))
        )
        for h in record.history
    )
    if started:
        return f"cancelled on request; job {record.job_id} stays started in the tenant"
    if record.job_id:
        return f"cancelled on request; job {record.job_id} stays in the tenant, not started"
    return "cancelled on request"


def graph_failure(error: GraphFailure) -> WorkflowFailed:
    return GraphRequestFailed(
        f"Graph answered {error.describe()}" + (f": {error.message}" if error.message else ""),
        code=error.code or "GraphRequestFailed",
        graph_status=error.status,
        graph_request_id=error.request_id,
    )


def token_failure(error: TokenError) -> WorkflowFailed:
    codes = ", ".join(f"AADSTS{c}" for c in error.codes)
    return WorkflowFailed(
        f"Entra ID refused the service's credentials ({error.error}"
        + (f", {codes}" if codes else "")
        + "): check PROVISIONER_CLIENT_ID and its secret or certificate",
        code="TokenAcquisitionFailed",
    )


def quarantined(current: GraphResponse[SynchronizationJob], reason: str) -> JobQuarantined:
    """The verify failure for a job Graph shows quarantined."""
    quarantine = current.value.status.quarantine
    error = quarantine.error if quarantine else None
    return JobQuarantined(
        f"the job is {reason} (status.code {current.value.status_code or '?'})",
        graph_status=current.status,
        graph_request_id=current.request_id,
        details={
            "reason": (quarantine.reason if quarantine else None) or "Unknown",
            "statusCode": current.value.status_code,
            "errorCode": error.code if error else None,
            "tenantActionable": error.tenant_actionable if error else None,
        },
    )


def failing(current: GraphResponse[SynchronizationJob], reason: str) -> JobFailing:
    """The verify failure for a job whose cycles fail."""
    status = current.value.status
    last = status.last_execution
    error = last.error if last else None
    return JobFailing(
        f"the job's cycles fail: {reason}",
        graph_status=current.status,
        graph_request_id=current.request_id,
        details={
            "lastExecutionState": last.state if last else None,
            "countSuccessiveCompleteFailures": status.count_successive_complete_failures,
            "errorCode": error.code if error else None,
            "tenantActionable": error.tenant_actionable if error else None,
        },
    )
