"""The reconciler: a periodic arq cron job that makes sure no accepted request is forgotten.

Each pass looks at every ``queued`` and ``running`` record:

- one with no arq job (its queue entry was lost: a Redis failover that dropped recent writes,
  a job key deleted by hand, a crash between two writes) is enqueued again. The job id is the
  request id, so this can never create a second job for a request that still has one;
- one that started and is past its deadline (its retry budget plus ``PROVISIONER_STUCK_GRACE_S``)
  is failed with ``RequestStuck`` so that the caller hears about it instead of waiting for
  ever. A request that never started is backlog, not stuck: it only needs a live job;
- one queued behind another caller's request is started once that one has ended.

Then it removes the listing-index entries of finished records whose retention has passed
(:meth:`~service.core.store.Store.trim_expired`).

The cron job is ``unique``: with many workers, one of them runs each pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from service.core.fields import utcnow
from service.core.keys import in_progress_key, job_key
from service.core.models import ErrorInfo, HistoryEntry, Outcome, Record, State
from service.core.settings import Settings
from service.core.store import Store

log = structlog.get_logger("workers.reconcile")
#: Records read per round trip (MGET), and their jobs' presence checked per pipeline.
_BATCH = 500


@dataclass(frozen=True, slots=True)
class Pass:
    """What one reconciler pass did."""

    checked: int
    requeued: int
    failed: int
    trimmed: int = 0  # index entries of expired finished records removed


async def reconcile_once(store: Store, settings: Settings) -> Pass:
    """Re-enqueue orphaned requests and fail stuck ones; safe to run concurrently."""
    checked = requeued = failed = 0
    now = utcnow()
    for state in (State.QUEUED, State.RUNNING):
        ids = await store.ids_in_state(state)
        for start in range(0, len(ids), _BATCH):
            batch = ids[start : start + _BATCH]
            checked += len(batch)
            found = await _check(store, settings, batch, now)
            requeued, failed = requeued + found[0], failed + found[1]
    trimmed = await store.trim_expired()
    if trimmed:
        log.info("index_trimmed", records=trimmed)
    return Pass(checked, requeued, failed, trimmed)


async def _check(
    store: Store, settings: Settings, ids: list[str], now: datetime
) -> tuple[int, int]:
    """One batch of a pass, read in one round trip: whether each request's arq job is there,
    then the records (in that order: a job that ends after its check has saved its record's
    end first, so it is not taken for lost); returns (requeued, failed)."""
    requeued = failed = 0
    grace = timedelta(seconds=settings.stuck_grace_s)
    async with store.redis.pipeline(transaction=False) as pipe:
        for request_id in ids:
            pipe.exists(job_key(request_id), in_progress_key(request_id))
        pipe.mget([store.record_key(i) for i in ids])
        *jobs, raws = await pipe.execute()
    records = [None if raw is None else Record.from_json(raw) for raw in raws]
    for request_id, record, alive in zip(ids, records, jobs, strict=True):
        if record is None or record.state.terminal:
            continue
        # Only a request that has started has a budget: one still waiting in a backlog is
        # not stuck, it is queued (and re-enqueued below if its job was lost).
        if record.retry_until is not None and now > record.retry_until + grace:
            record.state = State.FAILED
            record.error = ErrorInfo(
                code="RequestStuck",
                message="the request did not finish within its retry budget plus "
                f"{settings.stuck_grace_s:g}s of grace; POST .../retry re-drives it",
            )
            record.add(HistoryEntry(step=record.step, outcome=Outcome.FAILED, at=now,
                                    message="failed by the reconciler"))  # fmt: skip
            await store.save(record)
            failed += 1
            log.warning("request_stuck", provisioning_request_id=request_id)
            continue
        if record.queued_behind is not None:
            # Waiting behind another caller's request: start it if that one has ended
            # (its save normally does this; a crash in between is repaired here).
            promoted = await store.promote_waiter(record)
            if promoted is not None:
                requeued += 1
                log.warning("request_promoted", provisioning_request_id=promoted.id)
            continue
        if not alive and await store.enqueue(request_id):
            requeued += 1
            log.warning("request_requeued", provisioning_request_id=request_id)
    return requeued, failed
