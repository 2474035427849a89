"""The retry policy, as data: which Graph answers are retried, on which budget, how long to wait.

Graph calls come in three kinds (:class:`CallKind`). Each answer is classified by the table
:data:`POLICY` into a :class:`Disposition`:

- ``THROTTLED``: 429. Wait ``Retry-After`` (also tenant-wide, see :mod:`workers.workflow.throttle`).
- ``TRANSIENT``: 503/504, and 500/502/no answer for calls that are safe to repeat. Retry-After
  when given, else exponential backoff with full jitter. Counted against the request's budget.
- ``AMBIGUOUS``: a create POST that may or may not have happened (5xx, timeout, reset; Graph can
  answer 5xx after it made the job). Never retried blindly: under the create claim the workflow
  polls the job list for up to ``create_settle_s`` before deciding
  (:mod:`workers.workflow.create`).
- ``CONSISTENCY``: replication lag (404, 403, 409 on the job just created; 401 ``UnknownError``
  on a principal too new to be seen). Its own bounded budget (``consistency_budget_s``); a 401
  ``UnknownError`` that outlasts it ends ``GraphPermissionMissing`` (missing permission, or
  ``OwnedBy`` without ownership, answer the same way).
- ``FATAL``: everything else; the request fails at once with Graph's code and request-id.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum

from service.core.errors import GraphFailure, GraphTransportError


class CallKind(StrEnum):
    """How safe a Graph call is to repeat, and whether it touches a just-created job."""

    LOOKUP = "lookup"  # GET on the principal (templates, jobs): it must exist already
    READ = "read"  # GET on the job we just created or adopted
    WRITE = "write"  # PUT secrets, start, validateCredentials: safe, the workflow checks first
    CREATE = "create"  # POST jobs: not idempotent, never repeated without listing first
    APP = "app"  # GET a principal that may not have replicated: 404/401 go back to the step
    GRANT = "grant"  # POST appRoleAssignedTo: 5xx unclear (list again), 404/401 lag
    DELETE = "delete"  # DELETE a job: safe to repeat; its 404 is "already gone" (the step's call)


class Disposition(StrEnum):
    """What to do about a failed call."""

    THROTTLED = "throttled"
    TRANSIENT = "transient"
    AMBIGUOUS = "ambiguous"
    CONSISTENCY = "consistency"
    FATAL = "fatal"


TRANSPORT = 0  # the "status" of a call that got no HTTP answer
_T, _X, _A, _C = (
    Disposition.THROTTLED,
    Disposition.TRANSIENT,
    Disposition.AMBIGUOUS,
    Disposition.CONSISTENCY,
)

# status -> disposition, per kind of call. 401 is consistency only with code UnknownError (see
# classify); any status not listed is fatal.
POLICY: dict[CallKind, dict[int, Disposition]] = {
    # A 404 or 403 on the principal itself is an answer (unknown principal, missing
    # permission), not lag; 401 UnknownError is what a principal too new to be seen gets.
    CallKind.LOOKUP: {
        429: _T, 500: _X, 502: _X, 503: _X, 504: _X, TRANSPORT: _X,
        401: _C,
    },
    # Right after the job was created, every replica may not know it yet.
    CallKind.READ: {
        429: _T, 500: _X, 502: _X, 503: _X, 504: _X, TRANSPORT: _X,
        404: _C, 401: _C, 403: _C, 409: _C,
    },
    CallKind.WRITE: {
        429: _T, 500: _X, 502: _X, 503: _X, 504: _X, TRANSPORT: _X,
        404: _C, 401: _C, 403: _C, 409: _C,
    },
    CallKind.CREATE: {
        429: _T, 500: _A, 502: _A, 503: _A, 504: _A, TRANSPORT: _A,
        401: _C, 409: _C,
    },
    # instantiate_app waits out a new principal's 404 / 401 on its own budget.
    CallKind.APP: {
        429: _T, 500: _X, 502: _X, 503: _X, 504: _X, TRANSPORT: _X,
    },
    CallKind.GRANT: {
        429: _T, 500: _A, 502: _A, 503: _A, 504: _A, TRANSPORT: _A,
        401: _C, 404: _C, 409: _C,
    },
    # deprovision: a repeated DELETE is harmless; 409 is "being updated by another operation".
    CallKind.DELETE: {
        429: _T, 500: _X, 502: _X, 503: _X, 504: _X, TRANSPORT: _X,
        401: _C, 409: _C,
    },
}  # fmt: skip


def classify(error: GraphFailure, kind: CallKind) -> Disposition:
    """Look a failed call up in :data:`POLICY`."""
    if isinstance(error, GraphTransportError):
        return POLICY[kind][TRANSPORT]
    if error.status == 401 and error.code != "UnknownError":
        return Disposition.FATAL  # InvalidAuthenticationToken is handled by the client itself
    return POLICY[kind].get(error.status, Disposition.FATAL)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: integer, decimal (Graph's ``2.128``) or an
    HTTP-date; None when absent or unparseable. Negative values and past dates give 0."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        # "30,120" (seen from Graph) means 30; an HTTP-date also holds a comma, after the day.
        seconds = float(text.split(",")[0])
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN / inf
        return None
    return max(0.0, seconds)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter, capped per wait; Retry-After wins when present."""

    base_s: float = 1.0
    cap_s: float = 60.0
    max_retry_after_s: float = 300.0

    def delay(
        self, failures: int, retry_after: float | None, rng: random.Random | None = None
    ) -> float:
        """The wait before the next try, after ``failures`` consecutive failures (>= 1)."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after_s)
        ceiling = min(self.cap_s, self.base_s * 2 ** max(0, failures - 1))
        return (rng or random).uniform(0, ceiling)
