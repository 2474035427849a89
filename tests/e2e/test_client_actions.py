"""Issue 12: ``provisioner pause|resume|restart|rotate|deprovision`` and the smoke test options
(``--smoke-user``, ``--smoke-type``) against a running API, worker and sandbox (separate
processes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.test_client import api_env, cli
from tests.helpers.harness import SALESFORCE
from tests.helpers.sandbox import SandboxProcess

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


SMOKE_USER = "9bb0f679-a883-4a6f-8260-35b491b8b8c8"
SMOKE_GROUP = "4dd0f679-a883-4a6f-8260-35b491b8b8ca"
FAILING_USER = "1cc0f679-a883-4a6f-8260-35b491b8b8c9"


def test_smoke_test_options_of_submit_resume_and_restart(
    api_env: dict[str, str], fresh_sandbox: SandboxProcess
) -> None:
    """``--smoke-user ID [--smoke-type User|Group]`` on submit, resume and restart: the request
    carries ``smokeTest``, the step view shows Graph's per-step outcome, a failed step exits 1."""
    done = cli(api_env, "submit", "--sp", SALESFORCE, "--smoke-user", SMOKE_USER, "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[ok] smoke_test" in done.stdout
    assert f"User {SMOKE_USER}" in done.stdout
    assert "EntryExportAdd Success" in done.stdout

    assert cli(api_env, "pause", "--sp", SALESFORCE, "--wait").returncode == 0
    resumed = cli(
        api_env, "resume", "--sp", SALESFORCE, "--smoke-user", SMOKE_GROUP,
        "--smoke-type", "Group", "--wait",
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "[ok] verify" in resumed.stdout
    assert f"Group {SMOKE_GROUP}" in resumed.stdout

    fresh_sandbox._call(
        "PUT", "/_sandbox/on-demand", {"failSubjects": {FAILING_USER: "the app said 409"}}
    )
    failed = cli(
        api_env, "restart", "--sp", SALESFORCE, "--reset-scope", "Watermark",
        "--smoke-user", FAILING_USER, "--wait",
    )  # fmt: skip
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "[!!] smoke_test" in failed.stdout
    assert "error SmokeTestFailed" in failed.stdout
    assert "the app said 409" in failed.stdout
    subjects = fresh_sandbox._call("GET", "/_sandbox/lifecycle")["onDemandSubjects"]
    assert subjects == {SMOKE_USER: 1, SMOKE_GROUP: 1, FAILING_USER: 1}, subjects

    lone = cli(api_env, "restart", "--sp", SALESFORCE, "--smoke-type", "Group")
    assert lone.returncode == 2
    assert "--smoke-type needs --smoke-user" in lone.stderr
    bad = cli(api_env, "submit", "--sp", SALESFORCE, "--smoke-user", "not-a-guid")
    assert bad.returncode == 2
    assert "smokeTest.subjectId" in bad.stderr
    wrong = cli(api_env, "deprovision", "--sp", SALESFORCE, "--smoke-user", SMOKE_USER)
    assert wrong.returncode == 2  # argparse: deprovision takes no smoke test
