"""Graph resource models: errors, principals, jobs (their JSON shapes). Pure."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from sandbox.seed import SeedTemplate

ZERO_TIME = "0001-01-01T00:00:00Z"
JOB_SETTINGS = (
    {"name": "AzureIngestionAttributeOptimization", "value": "False"},
    {"name": "LookaheadQueryEnabled", "value": "False"},
    {"name": "QuarantineTooManyDeletesThreshold", "value": "500"},
)


class GraphError(Exception):
    """A Graph error answer: HTTP status, ``error.code`` and ``error.message``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def not_found(what: str) -> GraphError:
    return GraphError(
        404,
        "Request_ResourceNotFound",
        f"Resource '{what}' does not exist or one of its queried reference-property objects "
        "are not present.",
    )


def bad_request(message: str) -> GraphError:
    return GraphError(400, "BadRequest", message)


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Principal:
    id: str
    display_name: str
    app_id: str
    templates: list[SeedTemplate]
    new_until: float
    owners: frozenset[str] = frozenset()
    quarantine_after_s: float | None = None
    fail_cycles: bool | None = None

    def template_json(self, t: SeedTemplate) -> dict[str, Any]:
        return {
            "id": t.id,
            "applicationId": self.app_id,
            "default": t.default,
            "description": t.description,
            "discoverable": t.discoverable,
            "factoryTag": t.factoryTag or t.id,
            "metadata": [],
            "schema": {"directories": [], "synchronizationRules": []},
        }


@dataclass(frozen=True)
class CycleRules:
    """How a started job behaves: its first cycle ends ``first_cycle_s`` after start, the next
    ones every ``cycle_s``; ``fail_cycles`` makes them fail; ``quarantine_after_s`` quarantines
    the job that long after start (under ``quarantine_code``, as in Graph's Get example)."""

    first_cycle_s: float = 1.0
    cycle_s: float = 2400.0
    fail_cycles: bool = False
    quarantine_after_s: float | None = None
    quarantine_reason: str = ""
    quarantine_code: str = "Paused"


@dataclass
class Job:
    id: str
    template_id: str
    sp_id: str
    created_at: float
    schedule_state: str
    status_code: str
    starts: int = 0
    active_at: float | None = None  # when a NotRun job becomes Active/Quarantine
    bad_credentials: bool = False
    began: dt.datetime | None = None
    last_execution: dict[str, Any] | None = None
    last_success: dict[str, Any] | None = None
    quarantine: dict[str, Any] | None = None
    failures: int = 0
    rules: CycleRules = CycleRules()
    quarantine_at: float | None = None  # when the started job goes to quarantine
    cycle_began: float | None = None  # when the running cycle began (monotonic)

    def synchronized_by_type(self) -> list[dict[str, Any]]:
        """``synchronizedEntryCountByType``: the objects the last successful cycle found in
        scope, which the job keeps in sync (empty while none)."""
        count = int((self.last_success or {}).get("countEntitled") or 0)
        return [{"key": "User", "value": count}] if count else []

    def to_json(self) -> dict[str, Any]:
        steady = self.last_success["timeEnded"] if self.last_success else ZERO_TIME
        return {
            "id": self.id,
            "templateId": self.template_id,
            "schedule": {"expiration": None, "interval": "PT40M", "state": self.schedule_state},
            "status": {
                "code": self.status_code,
                "countSuccessiveCompleteFailures": self.failures,
                "escrowsPruned": False,
                "lastExecution": self.last_execution,
                "lastSuccessfulExecution": self.last_success,
                "lastSuccessfulExecutionWithExports": None,
                "progress": [],
                "quarantine": self.quarantine,
                "steadyStateFirstAchievedTime": steady,
                "steadyStateLastAchievedTime": steady,
                "synchronizedEntryCountByType": self.synchronized_by_type(),
                "troubleshootingUrl": None,
            },
            "synchronizationJobSettings": [dict(s) for s in JOB_SETTINGS],
        }


def execution(
    state: str, began: str, ended: str, error: dict[str, Any], entitled: int = 0
) -> dict[str, Any]:
    counts = [
        "countEntitled",
        "countEntitledForProvisioning",
        "countEscrowed",
        "countEscrowedRaw",
        "countExported",
        "countExports",
        "countImported",
        "countImportedDeltas",
        "countImportedReferenceDeltas",
    ]
    return {
        "activityIdentifier": str(uuid.uuid4()),
        **dict.fromkeys(counts, 0),
        "countEntitled": entitled,
        "countEntitledForProvisioning": entitled,
        "error": error,
        "state": state,
        "timeBegan": began,
        "timeEnded": ended,
    }


# Graph's own Get example (REF v1.0-synchronization-synchronizationjob-get.md): empty dates.
EXAMPLE_QUARANTINE_ERROR = {
    "code": "SalesforceInvalidCredentials",
    "message": "Your Salesforce.com credentials are invalid.  Please obtain a current "
    "Salesforce.com administrative user name, password and security token, and enter those in "
    "the screen for configuring user provisioning",
    "tenantActionable": True,
}
CYCLE_ERROR = {
    "code": "SandboxCycleFailed",
    "message": "The target system answered 500 to every export of this cycle (sandbox).",
    "tenantActionable": False,
}


def _escrow_error(what: str) -> dict[str, Any]:
    return {
        "code": "SandboxEscrowThreshold",
        "message": f"{what} of the provisioning events failed: the target system answered 503 "
        "(sandbox). The job retries them in later cycles.",
        "tenantActionable": False,
    }


#: The error of a quarantine whose reason the Get example does not show (sandbox wording: Graph
#: documents no error per reason). Any other reason gets the Get example's error.
REASON_ERRORS: dict[str, dict[str, Any]] = {
    "EncounteredEscrowProportionThreshold": _escrow_error("More than 40%"),
    "EncounteredBaseEscrowThreshold": _escrow_error("More than 5,000"),
    "EncounteredTotalEscrowThreshold": _escrow_error("More than 40,000"),
    "IngestionInterrupted": {
        "code": "SandboxIngestionInterrupted",
        "message": "The import from the source was interrupted (sandbox).",
        "tenantActionable": False,
    },
}


def example_quarantine(reason: str) -> dict[str, Any]:
    """A quarantine object exactly as in Graph's Get example, with ``reason`` (and, for the
    reasons of :data:`REASON_ERRORS`, an error that fits it)."""
    return {
        "currentBegan": "",
        "nextAttempt": "",
        "reason": reason,
        "seriesBegan": "",
        "seriesCount": 2,
        "error": dict(REASON_ERRORS.get(reason, EXAMPLE_QUARANTINE_ERROR)),
    }


NO_ERROR = {"code": "None", "message": "", "tenantActionable": False}
QUARANTINE_ERROR = {
    "code": "SandboxInvalidCredentials",
    "message": "The credentials saved for this application were rejected by the target system "
    "(sandbox). Update the admin credentials and start the job again.",
    "tenantActionable": True,
}
