"""Issue 4, item 4: SIGTERM lets a worker finish the step it is running (bounded by the step
timeout) and exit 0; the next worker resumes at the following step, so no Graph call of a
completed step is made twice, and the retries graceful restarts cost never fail the request.

Every Graph call takes 1 s in the sandbox, so a SIGTERM always lands in the middle of a step.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.chaos.stack import (
    STEP_TIMEOUT_S,
    Records,
    arrived,
    calls,
    env_for,
    one_started_job,
    processes,
    wait_for,
)
from tests.helpers.processes import Child
from tests.helpers.sandbox import SandboxProcess

pytestmark = pytest.mark.chaos


async def _terminate(worker: Child) -> float:
    """SIGTERM; return how long the worker took to exit (it must exit 0)."""
    sent = time.monotonic()
    worker.signal(signal.SIGTERM)
    code = await asyncio.to_thread(worker.proc.wait, STEP_TIMEOUT_S + 5)
    assert code == 0, worker.log()[-2000:]
    return time.monotonic() - sent


async def test_sigterm_finishes_the_running_step_and_nothing_repeats(
    tmp_path: Path, redis: Redis, redis_url: str, sandboxes: Callable[..., SandboxProcess]
) -> None:
    sandbox = sandboxes("sandbox", latency_ms=1000)
    sp = sandbox.principals()[0]["id"]
    env = env_for(sandbox, redis_url, "chaos-term")
    records = Records(redis, "chaos-term")
    with processes(tmp_path) as procs:
        rid = await records.submit(sp)

        # 1. SIGTERM while create_job runs (its job list reached Graph and is not answered).
        first = procs.worker(env, "term-1")

        async def list_in_flight() -> bool:
            return arrived(sandbox, "jobs.list") >= 1

        await wait_for(list_in_flight, timeout_s=30)
        assert not await records.has_done(rid, "create_job")
        exit_1 = await _terminate(first)
        assert await records.done_steps(rid) == ["resolve_template", "create_job"]

        # 2. SIGTERM while the next worker's start_job is in flight (its POST reached Graph
        # and is not answered yet): the worker finishes that step, then exits.
        second = procs.worker(env, "term-2")

        async def start_in_flight() -> bool:
            return arrived(sandbox, "jobs.start") >= 1

        await wait_for(start_in_flight, timeout_s=30)
        exit_2 = await _terminate(second)
        assert "start_job" in await records.done_steps(rid)

        # 3. A third worker verifies; the request succeeds.
        procs.worker(env, "term-3")
        record = await records.terminal(rid, timeout_s=30)
    assert record.state.value == "succeeded", (record.error, record.history)
    assert record.job_id == one_started_job(sandbox, sp)
    # Completed steps were not repeated: one template list, one job list + create, one start.
    repeated = {
        route: calls(sandbox, route)
        for route in ("templates.list", "jobs.list", "jobs.create", "jobs.start")
    }
    assert repeated == dict.fromkeys(repeated, 1), repeated
    print(f"\nCHAOS sigterm exit_s=[{exit_1:.1f}, {exit_2:.1f}] attempts={record.attempts}")
    assert max(exit_1, exit_2) <= STEP_TIMEOUT_S
