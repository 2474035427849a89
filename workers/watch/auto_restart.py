"""Opt-in recovery: the watch restarts a job quarantined for a transient reason
(``PROVISIONER_AUTO_RESTART=quarantine``; off by default).

Each restart is an ordinary ``restart`` request of the caller :data:`CALLER`, stored and queued
through :meth:`~service.core.store.Store.accept` like one that came through the API: it has an
id, a history with Graph's request-ids, retries, metrics, and shows in the request list, /ui and
the application's requests; the in-flight rule per (principal, template) applies, so two
auto-restarts of one job are never in flight together. Which reasons are transient, and the
``resetScope`` each restart sends, is :data:`TRANSIENT_REASONS` (sources in docs/workflow.md);
any other reason (credentials, ``TooManyDeletes``, ``QuarantinedOnDemand``, ``Unknown``, a
reason Graph adds later) is left to a person, as is a transient reason whose error names
credentials or authorization (those need ``rotateCredentials``). A job gets at most
``PROVISIONER_AUTO_RESTART_MAX_PER_DAY`` auto-restarts in any 24 h, spaced by
:data:`BACKOFF_S`; when they were made is kept in Redis (``Keys.auto_restarts``).
"""

from __future__ import annotations

import time
import uuid
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import structlog
from prometheus_client import Counter

from service.core.applications import SYSTEM_CALLER_PREFIX, QuarantineView, WatchedJob
from service.core.models import Record
from service.core.store import Store
from workers.metrics import WorkerMetrics

log = structlog.get_logger("workers.watch")
_COUNTERS: weakref.WeakKeyDictionary[WorkerMetrics, Counter] = weakref.WeakKeyDictionary()
CALLER = f"{SYSTEM_CALLER_PREFIX}auto-restart"
WINDOW_S = 86_400  # "per day": any 24 h

#: Quarantine reasons treated as transient, and the restart's ``resetScope`` for each. The
#: escrow thresholds: per-object failures crossed a threshold (the target failing for a while);
#: ``Escrows`` restarts the counter that led to quarantine, ``QuarantineState`` lifts it.
#: ``IngestionInterrupted``: the import was interrupted; lifting the quarantine lets it run.
TRANSIENT_REASONS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "EncounteredEscrowProportionThreshold": ("QuarantineState", "Escrows"),
        "EncounteredBaseEscrowThreshold": ("QuarantineState", "Escrows"),
        "EncounteredTotalEscrowThreshold": ("QuarantineState", "Escrows"),
        "IngestionInterrupted": ("QuarantineState",),
    }
)
#: Seconds a job's auto-restart waits after its previous one, by how many it had in the last
#: 24 h (0, 1, 2, ...; the last entry repeats). Graph itself retries a quarantined job 6, 12 and
#: 24 h after the failure, so the watch's own tries stay well inside that.
BACKOFF_S: tuple[int, ...] = (0, 1_800, 7_200, 21_600)
#: Words of a quarantine error code that mean the credentials or permissions are the problem.
CREDENTIAL_WORDS = ("credential", "unauthori", "authoriz", "forbidden", "password", "token")


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether to restart now, why (for the log), and with which reset flags."""

    restart: bool
    why: str
    reset_scope: tuple[str, ...] = ()
    result: str = "requested"  # the metric's label


def decide(
    quarantine: QuarantineView | None,
    previous: Sequence[float],
    now: float,
    max_per_day: int,
    backoff: Sequence[int] = BACKOFF_S,
) -> Decision:
    """The rule, pure: ``previous`` are the job's earlier auto-restarts (epoch seconds)."""
    if quarantine is None:
        return Decision(False, "not quarantined")
    reason = quarantine.reason or ""
    scope = TRANSIENT_REASONS.get(reason)
    if scope is None:
        return Decision(
            False, f"quarantine reason {reason or '(none)'!r} is not transient", (), "not_transient"
        )
    code = (quarantine.error.code if quarantine.error else None) or ""
    if any(word in code.lower() for word in CREDENTIAL_WORDS):
        return Decision(
            False, f"the quarantine error {code} needs rotateCredentials", (), "credentials"
        )
    recent = sorted(t for t in previous if t > now - WINDOW_S)
    if len(recent) >= max_per_day:
        return Decision(False, f"{len(recent)} auto-restarts in 24 h: the cap", (), "capped")
    wait = backoff[min(len(recent), len(backoff) - 1)]
    if recent and now - recent[-1] < wait:
        return Decision(
            False, f"backing off: {wait - (now - recent[-1]):.0f} s to go", (), "backoff"
        )
    return Decision(True, f"quarantined ({reason}), a transient reason", scope)


def _counter(metrics: WorkerMetrics) -> Counter:
    """``provisioner_watch_auto_restarts_total{result}`` in the worker's registry (one per
    registry: a watch is made per tick)."""
    counter = _COUNTERS.get(metrics)
    if counter is None:
        counter = Counter(
            "provisioner_watch_auto_restarts",
            "Quarantined jobs the watch considered restarting, by what it did (requested, "
            "in_flight, capped, backoff, not_transient, credentials).",
            ["result"],
            registry=metrics.registry,
        )
        _COUNTERS[metrics] = counter
    return counter


class AutoRestarter:
    """Applies :func:`decide` to a checked job and files the restart request."""

    def __init__(
        self,
        store: Store,
        max_per_day: int,
        backoff: Sequence[int] = BACKOFF_S,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.store = store
        self.max_per_day = max_per_day
        self.backoff = tuple(backoff)
        self.counter = _counter(metrics or WorkerMetrics())

    async def _busy(self, sp: str, template_id: str | None) -> bool:
        """Whether any request (a person's or ours) holds the job's in-flight slot: a restart
        behind it would only repeat what it does."""
        keys = self.store.keys
        for slot in {template_id or "*", "*"}:  # (a request naming no template holds "*")
            holder = await self.store.redis.get(keys.inflight(sp, slot))
            if not holder:
                continue
            record = await self.store.get(holder.decode() if isinstance(holder, bytes) else holder)
            if record is not None and not record.state.terminal:
                return True
        return False

    async def consider(self, sp: str, job: WatchedJob) -> Record | None:
        """File a restart for ``job`` when the rule says so; the request, or None."""
        if job.quarantine is None or not job.watching:
            return None
        now = time.time()
        first = decide(job.quarantine, [], now, self.max_per_day, self.backoff)
        if not first.restart:  # the reason alone rules it out: no Redis read
            self.counter.labels(result=first.result).inc()
            return None
        if await self._busy(sp, job.template_id):
            self.counter.labels(result="in_flight").inc()
            return None
        redis, key = self.store.redis, self.store.keys.auto_restarts(sp, job.job_id)
        await redis.zremrangebyscore(key, "-inf", now - WINDOW_S)
        previous = [score for _, score in await redis.zrange(key, 0, -1, withscores=True)]
        decision = decide(job.quarantine, previous, now, self.max_per_day, self.backoff)
        if not decision.restart:
            self.counter.labels(result=decision.result).inc()
            log.debug("auto_restart_skipped", service_principal_id=sp, job_id=job.job_id,
                      why=decision.why)  # fmt: skip
            return None
        record = Record(
            id=uuid.uuid4().hex,
            service_principal_id=sp,
            template_id=job.template_id,
            requested_template_id=job.template_id,
            action="restart",
            reset_scope=list(decision.reset_scope),
            caller=CALLER,
            metadata={"trigger": "auto-restart", "quarantineReason": job.quarantine.reason or ""},
        )
        # count it before filing it: a crash in between costs one try, never exceeds the cap
        await redis.zadd(key, {record.id: now})
        await redis.expire(key, WINDOW_S)
        accepted, created = await self.store.accept(record)
        if not created:  # an auto-restart of this job is still in flight
            await redis.zrem(key, record.id)
            self.counter.labels(result="in_flight").inc()
            return None
        self.counter.labels(result="requested").inc()
        log.info(
            "auto_restart_requested",
            service_principal_id=sp,
            job_id=job.job_id,
            request_id=record.id,
            reason=job.quarantine.reason,
            reset_scope=",".join(decision.reset_scope),
            queued_behind=accepted.queued_behind,
        )
        return accepted
