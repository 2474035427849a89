"""The project's exceptions.

::

    ProvisionerError
     ├── ConfigError              settings missing or invalid at start-up
     ├── StoreUnavailable         Redis cannot be reached (the API answers 503 + Retry-After)
     ├── TokenError               Entra ID refused or could not issue a token
     ├── GraphFailure             a Graph call failed; status (0: no answer), code, message,
     │    │                       request-id, Retry-After, client-request-id, method, URL
     │    ├── GraphError           Graph answered with a non-2xx status (or a 2xx body that
     │    │                       does not parse: code ``MalformedResponse``)
     │    └── GraphTransportError  no HTTP answer from Graph (timeout, reset, DNS, TLS)
     └── WorkflowFailed           a provisioning request ends ``failed``; ``code`` names why
          ├── TemplateNotFound     the requested templateId is not among the principal's templates
          ├── TemplateAmbiguous    several templates, none ``default``, and no templateId given
          ├── CredentialsRejected  validateCredentials answered 400
          ├── JobQuarantined       the started job is quarantined (status.quarantine set)
          ├── JobFailing           the started job's cycles fail (lastExecution Failed)
          ├── JobNotStarted        the job does not run after start (never Active, or stopped since)
          ├── GraphPermissionMissing the app's token lacks every permission the sync API
          │                       accepts, or a 401 UnknownError outlasted the lag budget
          ├── RetryBudgetExhausted transient errors outlasted the request's retry budget
          ├── GraphRequestFailed   Graph answered a non-retryable error (its code is kept)
          ├── JobNotFound          an action on a job found none for the principal/template
          ├── JobNotPaused         a paused job did not read Paused within the verify window
          └── SmokeTestFailed      provisionOnDemand reported a failed step for the subject

Secrets never go into an exception's message: messages are shown to API callers and logged.
"""

from __future__ import annotations

from typing import Any


class ProvisionerError(Exception):
    """Base class of every error raised on purpose by this project."""


class ConfigError(ProvisionerError):
    """Raised at start-up when a setting is missing or invalid; the message names the variable."""


class StoreUnavailable(ProvisionerError):
    """Raised when Redis cannot be reached or answers with a connection-level error."""


class TokenError(ProvisionerError):
    """Raised when msal returns no access token (bad secret, unknown client, network failure)."""

    def __init__(self, error: str, description: str, codes: list[int] | None = None) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.codes = codes or []


class GraphFailure(ProvisionerError):
    """Base of every failed Graph call, with what support needs to quote: the HTTP status
    (0 when no answer came), Graph's error code and message, its ``request-id``, the parsed
    ``Retry-After``, our ``client-request-id``, and the method and URL."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        request_id: str | None = None,
        retry_after: float | None = None,
        *,
        client_request_id: str | None = None,
        method: str = "",
        url: str = "",
    ) -> None:
        super().__init__(f"{method} {url} -> {status} {code}: {message}".strip())
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.retry_after = retry_after
        self.client_request_id = client_request_id
        self.method = method
        self.url = url

    def describe(self) -> str:
        """A short phrase for logs and history: ``HTTP 503 ServiceUnavailable``."""
        return f"HTTP {self.status} {self.code}"


class GraphError(GraphFailure):
    """Raised for every non-2xx answer from Graph, and for a 2xx body that does not parse."""


class GraphTransportError(GraphFailure):
    """Raised when a Graph call gets no HTTP answer: timeout, reset connection, TLS failure."""

    def __init__(self, method: str, url: str, reason: str, client_request_id: str) -> None:
        super().__init__(
            0, "NoResponse", reason, client_request_id=client_request_id, method=method, url=url
        )
        self.reason = reason

    def describe(self) -> str:
        return f"no answer ({self.reason})"


class WorkflowFailed(ProvisionerError):
    """Raised by a workflow step when the request cannot succeed; ends the request ``failed``."""

    code = "WorkflowFailed"

    def __init__(
        self,
        message: str,
        *,
        graph_status: int | None = None,
        graph_request_id: str | None = None,
        details: dict[str, Any] | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.graph_status = graph_status
        self.graph_request_id = graph_request_id
        self.details = details or {}
        if code is not None:
            self.code = code

    @classmethod
    def from_graph(cls, error: GraphFailure, message: str | None = None) -> WorkflowFailed:
        """Build the failure from Graph's answer, keeping its status and request-id."""
        if message is None:
            message = f"{error.code}: {error.message}" if error.message else error.code
        return cls(
            message,
            graph_status=error.status,
            graph_request_id=error.request_id,
        )


class TemplateNotFound(WorkflowFailed):
    """Raised when the requested templateId is not in the principal's (fully paged) templates."""

    code = "TemplateNotFound"


class TemplateAmbiguous(WorkflowFailed):
    """Raised when no templateId is given and several templates exist with none ``default``."""

    code = "TemplateAmbiguous"


class CredentialsRejected(WorkflowFailed):
    """Raised when Graph's validateCredentials answers 400: the caller's credentials are wrong."""

    code = "CredentialsRejected"


class JobQuarantined(WorkflowFailed):
    """Raised when the started job reports ``status.code == Quarantine``."""

    code = "JobQuarantined"


class JobFailing(WorkflowFailed):
    """Raised when the started job's last cycle failed or cycles fail in a row."""

    code = "JobFailing"


class GraphPermissionMissing(WorkflowFailed):
    """Raised when the app's access token holds none of the application permissions the
    synchronization API accepts, or when a 401 ``UnknownError`` outlasted the replication-lag
    budget (a missing permission, or ``Application.ReadWrite.OwnedBy`` on a principal the app
    does not own, answers exactly like a principal too new to be seen)."""

    code = "GraphPermissionMissing"


class JobNotStarted(WorkflowFailed):
    """Raised when the job is not Active by the verify timeout, or was read started and then
    Paused/Disabled for the whole settle window (stopped after the start)."""

    code = "JobNotStarted"


class RetryBudgetExhausted(WorkflowFailed):
    """Raised when throttling, 5xx or replication lag outlast the request's retry budget."""

    code = "RetryBudgetExhausted"


class GraphRequestFailed(WorkflowFailed):
    """Raised for a non-retryable Graph error; ``code`` is Graph's own error code."""

    code = "GraphRequestFailed"


class JobNotFound(WorkflowFailed):
    """Raised when an action (pause, resume, restart, rotateCredentials) finds no job for the
    principal and template; deprovision takes "already gone" as done instead."""

    code = "JobNotFound"


class JobNotPaused(WorkflowFailed):
    """Raised when the job does not read ``Paused`` within the verify window after pause."""

    code = "JobNotPaused"


class SmokeTestFailed(WorkflowFailed):
    """Raised when provisionOnDemand reports a failed step; the message is Graph's reason."""

    code = "SmokeTestFailed"


#: Every ``error.code`` a request can end with besides Graph's own codes (for the API's schema;
#: docs/runbook.md#error-codes says what each means and what to do). A test keeps it complete.
SERVICE_ERROR_CODES: tuple[str, ...] = (
    "TemplateNotFound",
    "TemplateAmbiguous",
    "CredentialsRejected",
    "CredentialsMissing",
    "JobQuarantined",
    "JobFailing",
    "JobNotStarted",
    "GraphPermissionMissing",
    "RetryBudgetExhausted",
    "GraphRequestFailed",
    "RequestStuck",
    "TokenAcquisitionFailed",
    "GalleryAppNotFound",
    "GalleryAppAmbiguous",
    "AppNotReplicated",
    "AppRoleAmbiguous",
    "AssignmentRejected",
    "ObjectMappingNotFound",
    "SchemaRejected",
    "JobNotFound",
    "JobNotPaused",
    "SmokeTestFailed",
)
ERROR_CODES_TEXT = (
    "A stable code: one of the service's ("
    + ", ".join(f"`{c}`" for c in SERVICE_ERROR_CODES)
    + "; docs/runbook.md#error-codes says what each means and what to do), else Graph's own "
    "error code (e.g. `Authorization_RequestDenied`) with `graphStatus` and `graphRequestId`."
)
