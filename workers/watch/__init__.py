"""The health watch over every job this service started or adopted (docs/workflow.md).

- :func:`register_job`: the workflow's hook when a request ends ``succeeded`` with a job.
- :func:`watch_tick`: the arq cron job that checks the due jobs within the call budget.
- :mod:`workers.watch.notify`: the ``application.health_changed`` callback and ticket note.
"""

from __future__ import annotations

from typing import Any

import structlog

from workers.watch.check import Watch, register_job
from workers.workflow.steps import Deps

__all__ = ["Watch", "register_job", "watch_tick"]

log = structlog.get_logger("workers.watch")


async def watch_tick(ctx: dict[str, Any]) -> None:
    """arq cron job: check the watched jobs that are due (see workers.watch.check)."""
    deps: Deps = ctx["deps"]
    result = await Watch(deps).tick()
    if result.changed:
        log.info("watch_tick", checked=result.checked, changed=result.changed)
