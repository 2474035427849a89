"""The command-line client against a running API, worker and sandbox (separate processes)."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.core.config_values import hash_api_key
from service.core.crypto import new_encryption_key
from tests.helpers.harness import GITHUB, SALESFORCE
from tests.helpers.processes import REPO_ROOT, start_api, start_worker
from tests.helpers.redis_server import RedisServer
from tests.helpers.sandbox import SandboxProcess

pytestmark = pytest.mark.e2e
KEY = "pk_client-test-key-abcdefghijklmnop"


@pytest.fixture
def api_env(tmp_path: Path, fresh_sandbox: SandboxProcess) -> Iterator[dict[str, str]]:
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    env = {
        **fresh_sandbox.env(),
        "PROVISIONER_REDIS_URL": redis.url,
        "PROVISIONER_API_KEYS": f"cli:{hash_api_key(KEY)}",
        "PROVISIONER_ENCRYPTION_KEY": new_encryption_key(),
        "PROVISIONER_VERIFY_POLL_S": "0.1",
        "PROVISIONER_VERIFY_SETTLE_S": "1",
    }
    api, base = start_api(env, tmp_path)
    worker = start_worker(env, tmp_path)
    yield {
        "PROVISIONER_API_URL": base,
        "PROVISIONER_API_KEY": KEY,
        "WORKER_METRICS": f"http://127.0.0.1:{worker.metrics_port}/metrics",
    }
    worker.stop()
    api.stop()
    redis.stop()


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "service.cli.main", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_submit_wait_status_list(api_env: dict[str, str]) -> None:
    done = cli(api_env, "submit", "--sp", SALESFORCE, "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    request_id = done.stdout.split()[1]
    assert "succeeded" in done.stdout
    for step in ("resolve_template", "create_job", "save_secrets", "start_job", "verify"):
        assert step in done.stdout

    status = cli(api_env, "status", request_id)
    assert status.returncode == 0
    assert "[ok] create_job" in status.stdout
    assert "graph 201" in status.stdout

    listed = cli(api_env, "list", "--state", "succeeded")
    assert request_id in listed.stdout
    own = cli(api_env, "list", "--caller", listed.stdout.split()[4])  # the caller column
    assert request_id in own.stdout
    other = cli(api_env, "list", "--caller", "webhook:jira")  # needs 'operator'
    assert other.returncode == 2
    assert "403" in other.stderr


def test_failed_request_shows_error_and_retry_is_refused_while_it_cannot_help(
    api_env: dict[str, str],
) -> None:
    failed = cli(api_env, "submit", "--sp", GITHUB, "--wait")
    assert failed.returncode == 1
    assert "TemplateAmbiguous" in failed.stdout
    request_id = failed.stdout.split()[1]
    listed = cli(api_env, "list", "--state", "failed")
    assert request_id in listed.stdout
    assert "TemplateAmbiguous" in listed.stdout
    again = cli(api_env, "retry", request_id)
    assert again.returncode == 0
    assert "queued" in again.stdout


def test_bad_input_and_bad_key_are_clear_errors(api_env: dict[str, str]) -> None:
    bad = cli(api_env, "submit", "--sp", "not-a-guid")
    assert bad.returncode == 2
    assert "servicePrincipalId" in bad.stderr
    assert "Traceback" not in bad.stderr
    wrong_key = cli({**api_env, "PROVISIONER_API_KEY": "nope"}, "list")
    assert wrong_key.returncode == 2
    assert "401" in wrong_key.stderr


def test_worker_and_api_metrics_count_the_work(api_env: dict[str, str]) -> None:
    assert cli(api_env, "submit", "--sp", SALESFORCE, "--wait").returncode == 0
    with urllib.request.urlopen(api_env["WORKER_METRICS"], timeout=5) as resp:  # noqa: S310
        worker = resp.read().decode()
    assert 'provisioner_requests_finished_total{code="",state="succeeded"} 1.0' in worker, _prov(
        worker
    )
    assert 'provisioner_graph_calls_total{route="jobs.create",status="201"} 1.0' in worker, _prov(
        worker
    )
    assert (
        'provisioner_step_duration_seconds_count{outcome="succeeded",step="verify"} 1.0' in worker
    )
    assert "provisioner_token_acquisitions_total 1.0" in worker, _prov(worker)
    api_url = api_env["PROVISIONER_API_URL"] + "/metrics"
    with urllib.request.urlopen(api_url, timeout=5) as resp:  # noqa: S310
        api = resp.read().decode()
    assert 'provisioner_requests_accepted_total{source="api"} 1.0' in api, _prov(api)
    assert "provisioner_workers_alive 1.0" in api, _prov(api)
    # The queue may hold the reconciler's next cron run besides our (finished) request.
    depth = next(line for line in api.splitlines() if line.startswith("provisioner_queue_depth "))
    assert float(depth.split()[1]) <= 1.0, _prov(api)


def _prov(text: str) -> str:
    """The service's own samples, for a readable failure."""
    return "\n".join(line for line in text.splitlines() if line.startswith("provisioner_"))
