"""Issue 4, item 8: jobs are JSON, so a pickle planted in the queue by someone who can write to
Redis is not executed (the job fails to decode, the worker carries on); and the service runs
end to end against Redis behind Sentinel (``redis+sentinel://``) and over TLS (``rediss://``
with a private CA).
"""

from __future__ import annotations

import os
import pickle
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trustme
from redis.asyncio import Redis

from tests.chaos.stack import (
    Api,
    Records,
    env_for,
    one_started_job,
    processes,
    wait_for,
    worker_up,
)
from tests.helpers.processes import REPO_ROOT, cli
from tests.helpers.redis_server import RedisServer, free_port
from tests.helpers.sandbox import SandboxProcess

pytestmark = pytest.mark.chaos


class Plant:
    """Unpickling this runs ``os.mkdir(marker)``: any code could run instead."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (str(self.marker),))


async def test_a_planted_pickle_is_not_executed(
    tmp_path: Path, redis: Redis, redis_url: str, sandboxes: Callable[..., SandboxProcess]
) -> None:
    marker = tmp_path / "pwned"
    job = {"t": 1, "f": "provision", "a": [Plant(marker)], "k": {}, "et": int(time.time() * 1000)}
    payload = pickle.dumps(job)
    pickle.loads(payload)  # noqa: S301 - proves the payload is live: arq's default would run it
    assert marker.is_dir()
    marker.rmdir()

    sandbox = sandboxes("sandbox")
    queue = "chaos-pickle"
    env = env_for(sandbox, redis_url, queue)
    records = Records(redis, queue)
    with processes(tmp_path) as procs:
        worker = procs.worker(env, "pickle-worker")
        await worker_up(redis, queue, "pickle-worker")
        await redis.set("arq:job:planted", payload)
        await redis.zadd(queue, {"planted": time.time() * 1000})

        async def handled() -> bool:
            return await redis.zscore(queue, "planted") is None

        await wait_for(handled, timeout_s=10)
        sp = sandbox.principals()[0]["id"]
        rid = await records.submit(sp)  # the worker still does its job
        record = await records.terminal(rid, timeout_s=20)
        assert worker.alive()
        log = worker.log()
    assert not marker.exists()
    assert "deserializing job planted failed" in log
    assert record.state.value == "succeeded"
    assert record.job_id == one_started_job(sandbox, sp)


def _sentinel_conf(workdir: Path, master_port: int) -> Path:
    """A minimal sentinel.conf watching the master (Sentinel rewrites it, so it is a copy)."""
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "sentinel.conf"
    conf.write_text(
        f"sentinel monitor mymaster 127.0.0.1 {master_port} 1\n"
        "sentinel down-after-milliseconds mymaster 5000\n"
    )
    return conf


async def test_service_runs_behind_sentinel(
    tmp_path: Path,
    sandboxes: Callable[..., SandboxProcess],
    redis_servers: Callable[..., RedisServer],
) -> None:
    master = redis_servers("master")
    conf = _sentinel_conf(tmp_path / "sentinel", master.port)
    sentinel = redis_servers("sentinel", config_file=conf, extra_args=("--sentinel",))
    url = f"redis+sentinel://127.0.0.1:{sentinel.port}/mymaster/0"
    sandbox = sandboxes("sandbox")
    sp = sandbox.principals()[0]["id"]
    env = env_for(sandbox, url, "chaos-sentinel")
    rid, done, check = await _provision_once(tmp_path, env, sp, "sentinel-worker")
    master_client = Redis.from_url(master.url)
    stored = await master_client.exists(f"chaos-sentinel:req:{rid}")
    await master_client.aclose()
    assert done["state"] == "succeeded", done
    assert done["jobId"] == one_started_job(sandbox, sp)
    assert stored == 1  # the data went to the master Sentinel named
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.startswith("sentinel-worker: ")


async def test_service_runs_over_tls_with_a_private_ca(
    tmp_path: Path,
    sandboxes: Callable[..., SandboxProcess],
    redis_servers: Callable[..., RedisServer],
) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    tls = tmp_path / "tls"
    tls.mkdir()
    ca.cert_pem.write_to_path(str(tls / "ca.pem"))
    cert.private_key_pem.write_to_path(str(tls / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tls / "cert.pem"))
    tls_port = free_port()
    redis_servers(
        "redis-tls",
        extra_args=(
            "--tls-port", str(tls_port),
            "--tls-cert-file", str(tls / "cert.pem"),
            "--tls-key-file", str(tls / "key.pem"),
            "--tls-ca-cert-file", str(tls / "ca.pem"),
            "--tls-auth-clients", "no",
        ),
    )  # fmt: skip
    url = f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={tls / 'ca.pem'}&ssl_check_hostname=true"
    sandbox = sandboxes("sandbox")
    sp = sandbox.principals()[0]["id"]
    env = env_for(sandbox, url, "chaos-tls")
    _, done, check = await _provision_once(tmp_path, env, sp, "tls-worker")
    assert done["state"] == "succeeded", done
    assert done["jobId"] == one_started_job(sandbox, sp)
    assert check.returncode == 0, check.stdout + check.stderr


async def _provision_once(
    tmp_path: Path, env: dict[str, str], sp: str, worker_name: str
) -> tuple[str, dict[str, Any], subprocess.CompletedProcess[str]]:
    """API + one named worker on ``env``'s Redis: one request to its end, then the worker's
    ``--check`` while it still runs."""
    with processes(tmp_path) as procs:
        async with Api.new_session() as session:
            api = Api(session, procs.api(env))
            procs.worker(env, worker_name)
            rid = await api.submit(sp)
            done = await api.terminal(rid, timeout_s=30)
        check = subprocess.run(
            cli("worker", "--check", "--name", worker_name),
            env={**os.environ, **env, "PYTHONPATH": str(REPO_ROOT)},
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    return rid, done, check
