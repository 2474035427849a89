"""How a run's end reads: the failure a Graph or token error becomes (code, message and
Graph's ids, for the record and the caller) and the cancelled line, which says what stays in
the tenant. Kept apart from the run loop so the API, the CLI and the tests word an end the
same way the worker does."""

from __future__ import annotations

from service.core.errors import GraphFailure, GraphRequestFailed, TokenError, WorkflowFailed
from service.core.models import Outcome, Record, Step


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
