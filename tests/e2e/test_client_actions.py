"""Issue 12: ``provisioner pause|resume|restart|rotate|deprovision`` against a running API,
worker and sandbox (separate processes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.test_client import api_env, cli
from tests.helpers.harness import SALESFORCE

pytestmark = pytest.mark.e2e
__all__ = ["api_env"]
ROTATED_TOKEN = "cli-rotated-token-5d4c3b2a1f"


def test_every_action_from_the_command_line(api_env: dict[str, str], tmp_path: Path) -> None:
    done = cli(api_env, "submit", "--sp", SALESFORCE, "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    paused = cli(api_env, "pause", "--sp", SALESFORCE, "--wait")
    assert paused.returncode == 0, paused.stdout + paused.stderr
    assert "(pause)" in paused.stdout
    assert "[ok] pause_job" in paused.stdout
    assert "create_job" not in paused.stdout  # the view shows the action's own steps
    resumed = cli(api_env, "resume", "--sp", SALESFORCE, "--wait")
    assert "[ok] verify" in resumed.stdout, resumed.stdout + resumed.stderr
    restarted = cli(
        api_env, "restart", "--sp", SALESFORCE, "--reset-scope", "Watermark,Escrows", "--wait"
    )
    assert "resetScope 'Watermark, Escrows'" in restarted.stdout, restarted.stdout
    secrets = tmp_path / "new.json"
    secrets.write_text(json.dumps({"SecretToken": ROTATED_TOKEN}))
    rotated = cli(api_env, "rotate", "--sp", SALESFORCE, "--credentials", str(secrets), "--wait")
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    assert ROTATED_TOKEN not in rotated.stdout + rotated.stderr
    gone = cli(api_env, "deprovision", "--sp", SALESFORCE, "--wait")
    assert "[ok] delete_job" in gone.stdout, gone.stdout
    missing = cli(api_env, "pause", "--sp", SALESFORCE, "--wait")
    assert missing.returncode == 1
    assert "JobNotFound" in missing.stdout
    bad = cli(api_env, "restart", "--sp", SALESFORCE, "--reset-scope", "None")
    assert bad.returncode == 2
    assert "resetScope" in bad.stderr
