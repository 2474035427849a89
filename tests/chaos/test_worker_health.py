"""Issue 4, item 9: worker liveness. Each worker refreshes its own arq health key
(``{queue}:health-check:{PROVISIONER_WORKER_NAME}``) every ``HEALTH_CHECK_INTERVAL_S``; the key
lives interval + 1 s. ``provisioner worker --check --name N`` fails within that of N's death
while the other worker's check still passes.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.chaos.stack import env_for, kill9, processes, wait_for, worker_up
from tests.helpers.processes import REPO_ROOT, cli
from tests.helpers.sandbox import SandboxProcess

pytestmark = pytest.mark.chaos
QUEUE = "chaos-health"
INTERVAL_S = 5


def _check(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli("worker", "--check", *args),
        env={**os.environ, **env, "PYTHONPATH": str(REPO_ROOT)},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,  # only against a hang: a Python start-up on a loaded machine
        check=False,
    )


async def test_check_fails_for_a_dead_worker_only(
    tmp_path: Path, redis: Redis, redis_url: str, sandboxes: Callable[..., SandboxProcess]
) -> None:
    sandbox = sandboxes("sandbox")
    env = env_for(sandbox, redis_url, QUEUE, PROVISIONER_HEALTH_CHECK_INTERVAL_S=str(INTERVAL_S))
    with processes(tmp_path) as procs:
        alpha = procs.worker(env, "alpha")
        procs.worker(env, "beta")
        await asyncio.gather(worker_up(redis, QUEUE, "alpha"), worker_up(redis, QUEUE, "beta"))
        both = await asyncio.to_thread(_check, env)
        assert both.returncode == 0, both.stderr
        assert {line.split(":")[0] for line in both.stdout.splitlines()} == {"alpha", "beta"}
        assert (await asyncio.to_thread(_check, env, "--name", "alpha")).returncode == 0

        kill9(alpha)
        killed = time.monotonic()

        # The event is the health key's expiry, watched in Redis: timing ``--check`` runs
        # instead would also time a Python start-up, seconds on a loaded machine.
        async def alpha_expired() -> bool:
            return not await redis.exists(f"{QUEUE}:health-check:alpha")

        await wait_for(alpha_expired, timeout_s=60, interval_s=0.1)
        detected_s = time.monotonic() - killed
        dead = await asyncio.to_thread(_check, env, "--name", "alpha")
        beta = await asyncio.to_thread(_check, env, "--name", "beta")
        unknown = await asyncio.to_thread(_check, env, "--name", "gamma")
    assert dead.returncode == 1, dead.stdout + dead.stderr
    assert beta.returncode == 0, beta.stdout + beta.stderr
    assert beta.stdout.startswith("beta: ")
    assert unknown.returncode == 1
    print(f"\nCHAOS health detected_s={detected_s:.1f} (interval {INTERVAL_S} s)")
    assert detected_s <= INTERVAL_S + 1 + 2  # the key's TTL, plus a loaded machine's slack
