"""Issue 4, item 2: a 202 is durable. Redis runs with the shipped deploy/redis.conf (AOF,
``appendfsync always``); it is SIGKILLed right after the last 202 and restarted. Nothing
accepted is lost; while Redis is down the API answers 503 + Retry-After within seconds (never
a 202, never a hang) and /readyz fails; the worker process reconnects by itself and finishes
every request within 30 s of Redis coming back, also the three that were mid-workflow (arq
re-runs them once their in-progress keys, restored from the AOF too, expire: 16 s here).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

from service.api.app import REDIS_TIMEOUT_S
from service.core.keys import Keys, job_key
from tests.chaos.stack import (
    REDIS_CONF,
    Api,
    env_for,
    one_started_job,
    processes,
    wait_for,
    worker_up,
)
from tests.helpers.redis_server import RedisServer
from tests.helpers.sandbox import SandboxProcess

pytestmark = pytest.mark.chaos
QUEUE = "chaos-redis"
K = Keys(QUEUE)


async def test_redis_kill9_after_202_loses_nothing(
    tmp_path: Path,
    sandboxes: Callable[..., SandboxProcess],
    redis_servers: Callable[..., RedisServer],
) -> None:
    server = redis_servers("redis", config_file=REDIS_CONF)  # AOF, appendfsync always
    sandbox = sandboxes("sandbox", latency_ms=200)
    sps = [p["id"] for p in sandbox.principals()]
    # A create claim or note left by a run that lost Redis mid-create_job must not outlast the
    # in-progress keys: the claim lives 10 s after its last renewal (default 30 s), and a create
    # whose answer was lost settles in 5 s (default 300 s; this sandbox's job list has no lag).
    env = env_for(
        sandbox,
        server.url,
        QUEUE,
        PROVISIONER_JOB_CLAIM_TTL_S="10",
        PROVISIONER_CREATE_SETTLE_S="5",
    )
    with processes(tmp_path) as procs:
        base = procs.api(env)
        worker = procs.worker(env, "redis-worker")
        client = Redis.from_url(server.url)
        await worker_up(client, QUEUE, "redis-worker")
        await client.aclose()
        async with Api.new_session(timeout_s=10) as session:
            api = Api(session, base)
            # Three requests mid-workflow when Redis dies, three accepted just before.
            running = await asyncio.gather(*(api.submit(sp) for sp in sps[:3]))

            async def underway() -> bool:
                records = await asyncio.gather(*(api.get(rid) for rid in running))
                return all(len(r["history"]) > 0 for r in records)

            await wait_for(underway, timeout_s=60)
            ids = [*running, *await asyncio.gather(*(api.submit(sp) for sp in sps[3:6]))]
            server.kill()  # kill -9 right after the last 202

            began = time.monotonic()
            status, _, headers = await api.call(
                "POST", "/v1/provisioning-requests", {"servicePrincipalId": sps[6]}
            )
            post_s = time.monotonic() - began
            assert status == 503
            assert int(headers["Retry-After"]) > 0
            began = time.monotonic()
            ready, _, _ = await api.call("GET", "/readyz")
            ready_s = time.monotonic() - began
            assert ready == 503
            # Fast: one Redis timeout at most (a refused connection fails at once), never a
            # retry after it; the rest of the bound is a loaded machine's slack.
            assert max(post_s, ready_s) < 2 * REDIS_TIMEOUT_S, (post_s, ready_s)

            # Redis stays down until the worker has seen the outage (its poll failed).
            async def lost() -> bool:
                return "redis_lost" in worker.log()

            await wait_for(lost, timeout_s=60, interval_s=0.1)

            server.start()
            restarted = time.monotonic()
            client = Redis.from_url(server.url)
            try:
                for rid in ids:  # every 202 came back from the AOF: record and queue entry
                    assert await client.exists(K.record(rid)), rid
                    assert await client.exists(job_key(rid)), rid
                    assert await client.zscore(QUEUE, rid) is not None, rid
                # The heartbeat restored from the AOF says nothing: wait for a new one.
                await client.delete(K.health_check("redis-worker"))
                await worker_up(client, QUEUE, "redis-worker", timeout_s=30)
                reconnect_s = time.monotonic() - restarted
            finally:
                await client.aclose()

            # (the bound on finished_s is below; this one only stops a hang)
            done = await asyncio.gather(*(api.terminal(rid, timeout_s=120) for rid in ids))
            finished_s = time.monotonic() - restarted

            async def accepting() -> bool:
                status, _, _ = await api.call(
                    "POST", "/v1/provisioning-requests", {"servicePrincipalId": sps[6]}
                )
                return status == 202

            await wait_for(accepting, timeout_s=30, interval_s=0.5)

            # A Redis that hangs (SIGSTOP: connections accepted, never answered) is no better
            # an excuse to hang: the API's 2 s socket timeout turns it into a 503 too.
            assert server.proc is not None
            os.kill(server.proc.pid, signal.SIGSTOP)
            try:
                began = time.monotonic()
                hung, _, hung_headers = await api.call(
                    "POST", "/v1/provisioning-requests", {"servicePrincipalId": sps[7]}
                )
                hung_s = time.monotonic() - began
                hung_ready, _, _ = await api.call("GET", "/readyz")
            finally:
                os.kill(server.proc.pid, signal.SIGCONT)
            assert (hung, hung_ready) == (503, 503)
            assert "Retry-After" in hung_headers
            assert hung_s < 2 * REDIS_TIMEOUT_S, hung_s
        assert worker.alive(), "the worker must reconnect in-process, not exit"
        log = worker.log()
    assert [r["state"] for r in done] == ["succeeded"] * len(ids), [r["error"] for r in done]
    for sp, record in zip(sps, done, strict=False):
        assert record["jobId"] == one_started_job(sandbox, sp)
    assert "redis_lost" in log
    print(
        f"\nCHAOS redis 503_s={post_s:.2f} hung_503_s={hung_s:.2f} readyz_s={ready_s:.2f} "
        f"reconnect_s={reconnect_s:.1f} finished_s={finished_s:.1f}"
    )
    # The re-runs begin within RECOVERY_S (16 s) of the restart; the rest is the runs
    # themselves and the worker's reconnection, with room for a loaded machine.
    assert finished_s <= 30, finished_s
