"""The health of a synchronization job as this service reports it (the application view,
the watch, metrics and the ``application.health_changed`` callback all use these words).

How a job's Graph status maps to one of them is :func:`workers.graph.health.assess`.
"""

from __future__ import annotations

from enum import StrEnum


class Health(StrEnum):
    """One word for a job's state, worst first when several apply."""

    QUARANTINED = "quarantined"  # Graph quarantined it: a non-null status.quarantine
    DISABLED = "disabled"  # its schedule is Disabled after it was started
    PAUSED = "paused"  # paused (by an admin, or this service's pause action)
    FAILING = "failing"  # its last cycle failed, or cycles keep failing
    HEALTHY = "healthy"  # scheduled and its cycles succeed
    UNKNOWN = "unknown"  # not run yet, or not readable
