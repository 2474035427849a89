"""Each action a request can ask for, and the steps it runs, in order: the one table of them.

``provision`` is the original workflow (with the onboarding steps, which skip themselves for a
request naming an existing principal, and the optional smoke test). Every other action acts on
the principal's existing job, which ``find_job`` looks up (by the requested template, the only
job, or the principal's default template). The steps' code is in :mod:`workers.workflow`; this
table lives in ``service/core`` so the CLI and ``/ui`` can show a record's steps too.
See docs/workflow.md ("Actions").
"""

from __future__ import annotations

from service.core.models import Step
from service.core.request import ActionName

S = Step
ACTION_STEPS: dict[str, tuple[Step, ...]] = {
    "provision": (
        S.INSTANTIATE_APP, S.ASSIGN, S.RESOLVE_TEMPLATE, S.CREATE_JOB, S.SAVE_SECRETS,
        S.MAP_ATTRIBUTES, S.START_JOB, S.VERIFY, S.SMOKE_TEST,
    ),
    "pause": (S.FIND_JOB, S.PAUSE_JOB),
    "resume": (S.FIND_JOB, S.START_JOB, S.VERIFY, S.SMOKE_TEST),
    "restart": (S.FIND_JOB, S.RESTART_JOB, S.VERIFY, S.SMOKE_TEST),
    "deprovision": (S.FIND_JOB, S.DELETE_JOB),
    "rotateCredentials": (S.FIND_JOB, S.SAVE_SECRETS, S.LIFT_QUARANTINE, S.VERIFY),
}  # fmt: skip
ACTIONS: tuple[str, ...] = tuple(ACTION_STEPS)


def steps_for(action: ActionName | str) -> tuple[Step, ...]:
    """The steps of an action, in order (``provision`` for an unknown one: older records)."""
    return ACTION_STEPS.get(action, ACTION_STEPS["provision"])


def reset_scope_value(flags: list[str] | None) -> str:
    """Graph's comma-separated ``criteria.resetScope`` for the request's flags ("" = Graph's
    default, the portal's "Restart provisioning": QuarantineState, Watermark, Escrows)."""
    return ", ".join(flags or [])
