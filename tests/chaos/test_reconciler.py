"""Issue 4, item 6: the reconciler (an arq cron job, unique, every
``PROVISIONER_RECONCILE_INTERVAL_S`` = 5 s here) re-enqueues ``queued``/``running`` requests
that have no live arq job, and fails requests stuck past their deadline with ``RequestStuck``.

- A: accepted by the API, then its arq job key and queue entry deleted by hand (what a Redis
  failover that dropped the last writes, or an operator's mistake, leaves behind) while no
  worker runs; the first worker's start-up pass re-enqueues it.
- B: a ``queued`` record whose job was never written (a crash between two writes), planted
  while the worker runs: a periodic pass finds it within one interval.
- S: a ``running`` record whose retry budget ended an hour ago and has no job: failed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from redis.asyncio import Redis

from service.core.fields import utcnow
from service.core.keys import job_key
from service.core.models import Record, State
from tests.chaos.stack import (
    Api,
    Records,
    env_for,
    one_started_job,
    processes,
    wait_for,
    worker_up,
)
from tests.helpers.sandbox import SandboxProcess

pytestmark = pytest.mark.chaos
QUEUE = "chaos-reconcile"
INTERVAL_S = 5


async def _plant(records: Records, record: Record) -> None:
    """Write a record the way the store does, but without its arq job."""
    async with records.redis.pipeline(transaction=True) as pipe:
        records.store._write(pipe, record)
        await pipe.execute()


async def test_reconciler_requeues_orphans_and_fails_stuck_requests(
    tmp_path: Path, redis: Redis, redis_url: str, sandboxes: Callable[..., SandboxProcess]
) -> None:
    sandbox = sandboxes("sandbox")
    sps = [p["id"] for p in sandbox.principals()]
    env = env_for(
        sandbox,
        redis_url,
        QUEUE,
        PROVISIONER_RECONCILE_INTERVAL_S=str(INTERVAL_S),
        PROVISIONER_STUCK_GRACE_S="1",
    )
    records = Records(redis, QUEUE)
    with processes(tmp_path) as procs:
        async with Api.new_session() as session:
            api = Api(session, procs.api(env))
            orphan_a = await api.submit(sps[0])
        # redis-cli DEL arq:job:<id> ; ZREM <queue> <id>
        assert await redis.delete(job_key(orphan_a)) == 1
        assert await redis.zrem(QUEUE, orphan_a) == 1
        stuck = Record(
            id=uuid.uuid4().hex,
            service_principal_id=sps[1],
            state=State.RUNNING,
            created_at=utcnow() - timedelta(hours=2),
            retry_until=utcnow() - timedelta(hours=1),
            caller="chaos",
        )
        await _plant(records, stuck)

        began = time.monotonic()
        procs.worker(env, "reconciler")
        await worker_up(redis, QUEUE, "reconciler")
        record_a = await records.terminal(orphan_a, timeout_s=20)
        a_s = time.monotonic() - began
        record_s = await records.terminal(stuck.id, timeout_s=30)

        orphan_b = Record(id=uuid.uuid4().hex, service_principal_id=sps[2], caller="chaos")
        await _plant(records, orphan_b)
        planted = time.monotonic()

        async def picked_up() -> bool:
            return (await records.get(orphan_b.id)).attempts > 0

        await wait_for(picked_up, timeout_s=INTERVAL_S + 60, interval_s=0.1)  # bound below
        b_s = time.monotonic() - planted
        record_b = await records.terminal(orphan_b.id, timeout_s=20)
    assert record_a.state is State.SUCCEEDED, record_a.history
    assert record_a.job_id == one_started_job(sandbox, sps[0])
    assert record_b.state is State.SUCCEEDED, record_b.history
    assert record_b.job_id == one_started_job(sandbox, sps[2])
    assert record_s.state is State.FAILED
    assert record_s.error is not None
    assert record_s.error.code == "RequestStuck"
    assert sandbox.stats()["jobs"][sps[1]] == []
    print(f"\nCHAOS reconcile a_done_s={a_s:.1f} b_requeued_s={b_s:.1f}")
    # Within one interval, plus the pick-up and the run's first write (3 s: a loaded machine's
    # slack, still short of a second interval).
    assert b_s <= INTERVAL_S + 3
