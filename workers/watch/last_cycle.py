"""The watch's second reading: the last cycle's per-user outcomes, from the provisioning logs.

When a check finds that the job's ``status.lastExecution`` ended at a time the application
view has no ``lastCycle`` for, it reads ``GET /auditLogs/provisioning`` filtered to the job and
to that cycle's ``timeBegan``/``timeEnded`` (:func:`workers.graph.provisioning.cycle_url`),
following ``@odata.nextLink``, and counts the entries of the cycle (the ``cycleId`` most of
them carry) by ``provisioningStatusInfo.status``. The read shares the watch's Graph budget:
each page takes one of the tick's call slots left over after the jobs' own GETs, spaced like
them (:class:`PageBudget`), and at most :data:`MAX_PAGES` pages of :data:`PAGE_SIZE` per cycle;
when the slots or pages run out the counts are marked ``truncated``. A 403 (no
``AuditLog.Read.All``) is recorded as ``unavailable`` and not asked again until the next cycle;
any other failure leaves the previous ``lastCycle`` and is tried at the next check.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass

import structlog

from service.core.applications import ExecutionView
from service.core.cycles import MAX_TOP_FAILURES, FailureCount, LastCycle
from service.core.errors import GraphError, GraphFailure, TokenError, WorkflowFailed
from service.core.fields import utcnow
from service.core.models import Step
from workers.graph.client import GraphClient
from workers.graph.provisioning import (
    ProvisioningObjectSummary,
    ProvisioningPage,
    cycle_url,
    provisioning_page,
)
from workers.graph.response import GraphResponse
from workers.workflow.calls import CallRunner, Defer
from workers.workflow.retry import CallKind

log = structlog.get_logger("workers.watch")
MAX_PAGES = 4  # pages read per cycle at most
PAGE_SIZE = 500  # $top: entries asked for per page
NO_PERMISSION = "Graph answered 403 to the provisioning logs: grant AuditLog.Read.All"
MESSAGE_CHARS = 300


@dataclass(slots=True)
class PageBudget:
    """The call slots a tick has left for log pages: slot ``i`` is due ``i / rate`` seconds
    after the tick began, the same spacing as the jobs' GETs, so that the tick never calls
    Graph faster than ``PROVISIONER_WATCH_MAX_CALLS_PER_S``."""

    began: float  # time.monotonic() at the tick's start
    rate: float
    next_slot: int
    end_slot: int  # exclusive

    @classmethod
    def unpaced(cls, pages: int = MAX_PAGES) -> PageBudget:
        """For a check outside a tick: ``pages`` slots, due at once."""
        return cls(time.monotonic(), float("inf"), 0, pages)

    async def take(self) -> bool:
        """Wait for the next slot; False when none is left."""
        if self.next_slot >= self.end_slot:
            return False
        slot = self.next_slot
        self.next_slot += 1
        delay = self.began + slot / self.rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        return True


def wants_read(stored: LastCycle | None, execution: ExecutionView | None) -> bool:
    """Whether the job finished a cycle the view has no outcomes for."""
    if execution is None or execution.began is None or execution.ended is None:
        return False
    if execution.ended.year < 2000:  # Graph's 0001-01-01: no cycle yet
        return False
    return stored is None or stored.ended != execution.ended


def summarize(
    entries: Iterable[ProvisioningObjectSummary], execution: ExecutionView, *, truncated: bool
) -> LastCycle:
    """The counts of the cycle most entries belong to (a neighbour's entry inside the time
    margin is left out), and its :data:`MAX_TOP_FAILURES` most frequent failure reasons."""
    entries = list(entries)
    cycles = Counter(e.cycle_id for e in entries if e.cycle_id)
    cycle_id = cycles.most_common(1)[0][0] if cycles else None
    mine = [e for e in entries if cycle_id is None or e.cycle_id == cycle_id]
    statuses = Counter(e.status for e in mine)
    reasons: Counter[str] = Counter()
    messages: dict[str, str] = {}
    for e in mine:
        if e.status != "failure":
            continue
        info = e.provisioning_status_info.error_info if e.provisioning_status_info else None
        text = (info.reason if info else None) or ""
        reason = (info.error_code if info else None) or text[:MESSAGE_CHARS] or "unknown"
        reasons[reason] += 1
        messages.setdefault(reason, text[:MESSAGE_CHARS])
    return LastCycle(
        began=execution.began,
        ended=execution.ended,
        cycle_id=cycle_id,
        succeeded=statuses["success"],
        failed=statuses["failure"],
        skipped=statuses["skipped"],
        warnings=statuses["warning"],
        top_failures=[
            FailureCount(reason=r, count=n, message=messages.get(r) or None)
            for r, n in reasons.most_common(MAX_TOP_FAILURES)
        ],
        truncated=truncated,
        read_at=utcnow(),
    )


async def read_last_cycle(
    graph: GraphClient,
    calls: CallRunner,
    job_id: str,
    execution: ExecutionView,
    budget: PageBudget,
) -> LastCycle | None:
    """The cycle's outcomes; None when nothing was read (no slot left, or Graph failed)."""
    assert execution.began is not None
    assert execution.ended is not None
    url: str | None = cycle_url(job_id, execution.began, execution.ended, PAGE_SIZE)
    entries: list[ProvisioningObjectSummary] = []
    pages = 0
    while url:
        if pages >= MAX_PAGES or not await budget.take():
            break
        page = await _page(graph, calls, url, execution)
        if isinstance(page, LastCycle):
            return page
        if page is None:
            break  # what the earlier pages gave is kept, marked truncated
        entries.extend(page.value.items)
        url, pages = page.value.next_link, pages + 1
    if pages == 0:
        return None
    return summarize(entries, execution, truncated=url is not None)


async def _page(
    graph: GraphClient, calls: CallRunner, url: str, execution: ExecutionView
) -> GraphResponse[ProvisioningPage] | LastCycle | None:
    def fetch(crid: str) -> Awaitable[GraphResponse[ProvisioningPage]]:
        return provisioning_page(graph, url, crid)

    try:
        return await calls.call(Step.VERIFY, CallKind.LOOKUP, fetch)
    except GraphError as e:
        if e.status == 403:
            detail = f" ({e.code}: {e.message})" if e.message else f" ({e.code})"
            return LastCycle(
                began=execution.began,
                ended=execution.ended,
                unavailable=NO_PERMISSION + detail,
                read_at=utcnow(),
            )
        log.info("watch_logs_unreadable", error=e.describe(), graph_request_id=e.request_id)
    except (Defer, GraphFailure, WorkflowFailed, TokenError) as e:
        log.info("watch_logs_unreadable", error=str(e))
    return None
