"""provisionOnDemand's answer, typed: a ``stringKeyStringValuePair`` whose ``key`` and ``value``
are both JSON *strings* holding serialized JSON (the provisionOnDemand reference page, Example
2: ``key`` is ``{"result":"Success","details":{}}``, ``value`` holds ``provisioningSteps[]``
with ``name``, ``type``, ``status``, ``description``, ``timestamp`` and ``details``, plus
``action``, ``statusInfo`` and the identities). Both strings are parsed here, once; an answer
whose strings are not JSON objects is a ``MalformedResponse``, like any body that does not fit.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field, ValidationError

from workers.graph.models import GraphModel

#: Step and status words that mean the subject was not provisioned (Graph capitalises them,
#: the provisioning logs write them in lower case: compared case-insensitively).
FAILED_STATUSES = frozenset({"failure", "failed", "error"})


class ProvisioningStep(GraphModel):
    """One step of the on-demand run (``EntryImport``, ``EntrySynchronizationScoping``, ...)."""

    name: str | None = None
    type: str | None = None
    status: str | None = None
    description: str | None = None
    timestamp: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return (self.status or "").lower() in FAILED_STATUSES


class ErrorInformation(GraphModel):
    error_code: str | None = None
    reason: str | None = None
    additional_details: str | None = None


class StatusInfo(GraphModel):
    status: str | None = None
    error_information: ErrorInformation | None = None


class OnDemandValue(GraphModel):
    """The parsed ``value`` string."""

    provisioning_steps: list[ProvisioningStep] = Field(default_factory=list)
    action: str | None = None
    status_info: StatusInfo | None = None
    reportable_identifier: str | None = None


class OnDemandKey(GraphModel):
    """The parsed ``key`` string."""

    result: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class OnDemandAnswer(GraphModel):
    """The raw answer: two strings."""

    key: str | None = None
    value: str | None = None


class OnDemandResult(GraphModel):
    """What happened to the subject."""

    result: str | None = None
    action: str | None = None
    steps: list[ProvisioningStep] = Field(default_factory=list)
    status: str | None = None
    error: ErrorInformation | None = None

    @property
    def failed_step(self) -> ProvisioningStep | None:
        return next((s for s in self.steps if s.failed), None)

    @property
    def succeeded(self) -> bool:
        if self.failed_step is not None:
            return False
        words = {(self.result or "").lower(), (self.status or "").lower()}
        return not (words & FAILED_STATUSES)

    def reason(self) -> str:
        """Graph's own words for a failure: the failing step's description, else the error."""
        step = self.failed_step
        parts: list[str] = []
        if step is not None:
            parts.append(f"{step.name or 'a step'} {step.status}: {step.description or ''}".strip())
        if self.error is not None and (self.error.error_code or self.error.reason):
            parts.append(f"{self.error.error_code or 'error'}: {self.error.reason or ''}".strip())
        return "; ".join(parts) or f"result {self.result or self.status or 'unknown'}"


def parse_answer(answer: OnDemandAnswer) -> OnDemandResult:
    """Both JSON strings of the answer, typed. Raises ValueError when they are not JSON objects."""
    key = OnDemandKey.model_validate(_object(answer.key, "key"))
    value = OnDemandValue.model_validate(_object(answer.value, "value"))
    status = value.status_info
    return OnDemandResult(
        result=key.result,
        action=value.action,
        steps=value.provisioning_steps,
        status=status.status if status else None,
        error=status.error_information if status else None,
    )


def _object(text: str | None, field: str) -> dict[str, Any]:
    if text is None or text == "":
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        raise ValueError(f"{field} is not a JSON string") from None
    if not isinstance(data, dict):
        raise ValueError(f"{field} does not hold a JSON object")
    return data


__all__ = [
    "OnDemandAnswer",
    "OnDemandResult",
    "ProvisioningStep",
    "ValidationError",
    "parse_answer",
]
