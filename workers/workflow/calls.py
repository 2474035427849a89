"""Running one Graph call under the retry policy, on behalf of one workflow run.

:class:`CallRunner` waits out the tenant cool-down, makes the call, and on failure asks
:func:`workers.workflow.retry.classify` what to do: wait and try again while the wait fits the short
in-process budget, or end the run with :class:`Defer` so the arq job comes back later without
holding a worker slot. The request's own budgets (``retry_until`` for throttling and 5xx,
``lag_since + consistency_budget_s`` for replication lag) decide when to give up, never arq's
``max_tries``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from hashlib import sha1
from typing import TypeVar

import structlog

from service.core.errors import GraphError, GraphFailure, RetryBudgetExhausted
from service.core.fields import utcnow
from service.core.models import Record, Step
from service.core.settings import Settings
from workers.graph.response import GraphResponse
from workers.metrics import WorkerMetrics
from workers.workflow.retry import Backoff, CallKind, Disposition, classify
from workers.workflow.throttle import Ahead, Slot, Throttle, parse_usage

T = TypeVar("T")
log = structlog.get_logger("workers.workflow.calls")
_CRID_NAMESPACE = uuid.UUID("6f1c8a52-3f0e-4a55-9d0f-0c7a3b6e2d11")


def uuid5_text(namespace: uuid.UUID, name: str) -> str:
    """``str(uuid.uuid5(namespace, name))``, the same GUID, about three times faster: built
    from the SHA-1 bytes without the :class:`uuid.UUID` object (five per request)."""
    digest = bytearray(sha1(namespace.bytes + name.encode(), usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    x = digest.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


class Defer(Exception):
    """Ends the current run: re-queued ``seconds`` from now, it resumes from the record."""

    def __init__(self, seconds: float, reason: str) -> None:
        super().__init__(f"deferred {seconds:.2f}s: {reason}")
        self.seconds = seconds
        self.reason = reason


class CancelRequested(Exception):
    """The API accepted a cancel: the run stops at this wait (verify's polling, the settle
    wait, a retry wait) instead of at the next step boundary only."""


class Ambiguous(Exception):
    """A create call whose outcome is unknown (5xx, timeout, reset): list before deciding."""

    def __init__(self, cause: GraphFailure) -> None:
        super().__init__(str(cause))
        self.cause = cause


class CallRunner:
    """Makes Graph calls for one run of one request, retrying per the policy."""

    def __init__(
        self,
        settings: Settings,
        record: Record,
        throttle: Throttle,
        stopping: Callable[[], bool] = lambda: False,
        metrics: WorkerMetrics | None = None,
        cancelled: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self._settings = settings
        self._cancelled = cancelled
        self._record = record
        self._throttle = throttle
        self._stopping = stopping
        self._metrics = metrics or WorkerMetrics()
        # A run yields its worker slot after half the job timeout, well before arq's own
        # timeout could fail it: the request resumes from its record in a fresh run.
        self._run_ends = time.monotonic() + settings.step_timeout_s / 2
        self._backoff = Backoff(
            settings.backoff_base_s, settings.backoff_cap_s, settings.max_retry_after_s
        )
        self._waited_s = 0.0  # in-process waiting so far in this run
        self._seq = 0
        self._ahead: Slot | None = None  # the next call's slot, taken with the save before it
        self.retries = 0

    def client_request_id(self, step: Step) -> str:
        """A GUID derived from the request id, step, run and call number, sent to Graph as
        ``client-request-id`` so one request's calls can be found in Graph's logs."""
        self._seq += 1
        name = f"{self._record.id}/{step.value}/{self._record.attempts}/{self._seq}"
        return uuid5_text(_CRID_NAMESPACE, name)

    def take_ahead(self) -> Ahead | None:
        """The throttle's take for the next call, to run in the round trip of the save just
        before it (pass its ``then`` to the save, then :meth:`took_ahead`)."""
        return self._throttle.take_ahead(max_wait_s=self._pacing_left_s())

    def took_ahead(self, ahead: Ahead | None) -> None:
        """Keep the slot the save's take reserved for the next :meth:`call`."""
        self._ahead = None if ahead is None else self._throttle.taken(ahead)

    def checkpoint(self) -> None:
        """End the run (:class:`Defer` 0) at a step boundary when the worker is shutting down
        or the run has used its share of the job timeout."""
        if self._stopping():
            raise Defer(0, "worker shutting down")
        if time.monotonic() > self._run_ends:
            raise Defer(0, "run time slice used")

    def _pacing_left_s(self) -> float:
        """The longest tenant-throttle wait :meth:`wait` would still sleep in-process."""
        if self._stopping():
            return 0.0
        left = min(self._settings.inprocess_wait_s, self._run_ends - time.monotonic())
        return max(0.0, left)

    async def wait(self, seconds: float, reason: str, *, pacing: bool = False) -> None:
        """Sleep in-process when the run's budget allows, else end the run with :class:`Defer`.

        Retry waits add up against ``inprocess_wait_s`` per run. ``pacing`` waits (the tenant
        throttle's slot or cool-down, before a call) are each bounded by it but not summed: a
        request needs several calls, and with many requests in line every call waits its turn,
        so a summed budget would end every run after a call or two and the multi-call steps
        (list then create, get then start) would never complete."""
        if not pacing and self._cancelled is not None and await self._cancelled():
            raise CancelRequested(reason)
        spent = 0.0 if pacing else self._waited_s
        if (
            spent + seconds > self._settings.inprocess_wait_s
            or time.monotonic() + seconds > self._run_ends
            or self._stopping()
        ):
            raise Defer(seconds, reason)
        if not pacing:
            self._waited_s += seconds
        await asyncio.sleep(seconds)

    async def call(self, step: Step, kind: CallKind, fn: Callable[[str], Awaitable[T]]) -> T:
        """Run ``fn(client_request_id)`` until it succeeds, fails for good or must be deferred.

        Raises the GraphError itself when the policy says fatal (the step decides what it
        means), :class:`Ambiguous` for an unclear create, :class:`Defer` for a long wait and
        :class:`RetryBudgetExhausted` when the request's budget is spent."""
        failures = 0
        while True:
            cooling = True
            while cooling:  # after a cool-down, take a bucket slot like everyone else
                slot, self._ahead = self._ahead, None
                if slot is None or self._throttle.stale(slot):
                    slot = await self._throttle.acquire(max_wait_s=self._pacing_left_s())
                hold, cooling = slot.wait_s, slot.cooling
                if hold <= 0:
                    break
                self._metrics.throttle_wait(hold)
                await self.wait(hold, "tenant throttle", pacing=True)
                # throttled meanwhile: the slot was spaced for the rate before the cut
                cooling = cooling or self._throttle.superseded(slot)
            try:
                result = await fn(self.client_request_id(step))
            except GraphFailure as e:
                if isinstance(e, GraphError) and e.status != 429:
                    self._throttle.observe(None)  # answered: it counts against the limit
                disposition = classify(e, kind)
                if disposition is Disposition.FATAL:
                    raise
                if disposition is Disposition.AMBIGUOUS:
                    raise Ambiguous(e) from e
                failures += 1
                self.retries += 1
                retry_after = e.retry_after
                if disposition is Disposition.THROTTLED:
                    hold = min(retry_after or 0.0, self._settings.max_retry_after_s)
                    await self._throttle.throttled(hold, slot)
                delay = self._backoff.delay(failures, retry_after)
                self._check_budget(e, disposition, delay)
                self._metrics.retry(disposition.value, delay)
                log.info(
                    "graph_retry",
                    step=step.value,
                    disposition=disposition.value,
                    graph_status=e.status,
                    graph_code=e.code,
                    graph_request_id=e.request_id,
                    client_request_id=e.client_request_id,
                    wait_s=round(delay, 3),
                    failures=failures,
                )
                await self.wait(delay, e.describe())
                continue
            self._throttle.observe(_usage(result))
            self._record.lag_since = None
            return result

    def _check_budget(self, error: GraphFailure, disposition: Disposition, delay: float) -> None:
        now = utcnow()
        deadline = self._record.retry_until or now
        if disposition is Disposition.CONSISTENCY:
            if self._record.lag_since is None:
                self._record.lag_since = now
            lag_end = self._record.lag_since + timedelta(
                seconds=self._settings.consistency_budget_s
            )
            deadline = min(deadline, lag_end)
        if now + timedelta(seconds=delay) > deadline:
            if disposition is Disposition.CONSISTENCY and isinstance(error, GraphError):
                # Lag that never ends is not lag: report Graph's own answer (e.g. 403).
                raise error
            raise RetryBudgetExhausted(
                f"gave up when the retry budget was spent; last error: {error.describe()}",
                graph_status=error.status or None,
                graph_request_id=error.request_id,
                details={"lastErrorCode": error.code},
            ) from error


def _usage(result: object) -> float | None:
    """The ``x-ms-throttle-limit-percentage`` of a call's answer, if Graph sent one."""
    return parse_usage(result.throttle_usage) if isinstance(result, GraphResponse) else None


def monotonic_ms(since: float) -> int:
    """Milliseconds elapsed since a ``time.monotonic()`` reading."""
    return int((time.monotonic() - since) * 1000)
