"""The CLI as a real process: start-up facts, reuse of the state dir, two sandboxes side by side."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests

from sandbox.cli import main
from tests.helpers.sandbox import SandboxError, SandboxProcess, running_sandbox, start_sandbox

SALESFORCE = "15331f0e-bdc6-41e2-afa0-a4c9abfe90b3"
INFO_KEYS = {
    "authority_host",
    "tenant_id",
    "graph_url",
    "ca_path",
    "client_id",
    "client_secret",
    "cert_client_id",
    "cert_path",
    "port",
    "pid",
}


def token(sb: SandboxProcess) -> str:
    resp = sb.requests_session().post(
        f"{sb.authority}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": sb.info["client_id"],
            "client_secret": sb.info["client_secret"],
            "scope": "https://graph.microsoft.com/.default",
        },
    )
    return str(resp.json()["access_token"])


def create_job(sb: SandboxProcess) -> requests.Response:
    return sb.requests_session().post(
        f"{sb.graph_url}/servicePrincipals/{SALESFORCE}/synchronization/jobs",
        json={"templateId": "salesforce"},
        headers={"Authorization": f"Bearer {token(sb)}"},
    )


def test_start_up_facts_banner_and_clean_stop(tmp_path: Path) -> None:
    sb = start_sandbox(tmp_path / "a")
    try:
        info = json.loads((tmp_path / "a" / "sandbox.json").read_text())
        assert info == sb.info
        assert set(info) >= INFO_KEYS
        assert info["pid"] == sb.proc.pid
        assert info["port"] > 0
        assert info["authority_host"] == f"https://127.0.0.1:{info['port']}"
        assert info["graph_url"] == f"{info['authority_host']}/v1.0"
        assert Path(info["ca_path"]).is_absolute()
        assert Path(info["ca_path"]).exists()
        pem = Path(info["cert_path"]).read_text()
        assert "PRIVATE KEY" in pem
        assert "BEGIN CERTIFICATE" in pem
        assert sb.proc.stdout is not None
        banner = {}
        while "authority" not in banner:
            key, _, value = sb.proc.stdout.readline().decode().strip().partition(": ")
            banner[key] = value
        assert banner["client_secret"] == info["client_secret"]
        assert banner["port"] == str(info["port"])
        assert banner["authority"] == sb.authority
        assert set(sb.env()) == {
            "PROVISIONER_TENANT_ID",
            "PROVISIONER_CLIENT_ID",
            "PROVISIONER_CLIENT_SECRET",
            "PROVISIONER_AUTHORITY_HOST",
            "PROVISIONER_GRAPH_URL",
            "PROVISIONER_CA_BUNDLE",
        }
    finally:
        sb.stop()
    assert sb.proc.returncode == 0
    assert not (tmp_path / "a" / "sandbox.json").exists()


def test_state_dir_is_reused(tmp_path: Path) -> None:
    with running_sandbox(tmp_path) as first:
        ca = Path(first.ca_path).read_bytes()
        thumbprint = first.info["cert_thumbprint"]
        old_token = token(first)
    with running_sandbox(tmp_path) as second:
        assert Path(second.ca_path).read_bytes() == ca
        assert second.info["cert_thumbprint"] == thumbprint
        resp = second.requests_session().get(
            f"{second.graph_url}/servicePrincipals/{SALESFORCE}/synchronization/jobs",
            headers={"Authorization": f"Bearer {old_token}"},
        )
        assert resp.status_code == 200  # same signing key; state itself is fresh
        assert resp.json()["value"] == []


def test_two_sandboxes_side_by_side_do_not_share_state(tmp_path: Path) -> None:
    with running_sandbox(tmp_path / "a") as a, running_sandbox(tmp_path / "b") as b:
        assert a.info["port"] != b.info["port"]
        assert create_job(a).status_code == 201
        assert create_job(a).status_code == 201
        assert len(a.stats()["jobs"][SALESFORCE]) == 2
        assert b.stats()["jobs"][SALESFORCE] == []
        assert b.stats()["total_calls"] == 0
        a.patch_faults({"create_status": 200})
        assert create_job(b).status_code == 201
        assert create_job(a).status_code == 200
        # a token from one sandbox is not valid at the other (different signing keys)
        resp = b.requests_session().get(
            f"{b.graph_url}/servicePrincipals/{SALESFORCE}/synchronization/jobs",
            headers={"Authorization": f"Bearer {token(a)}"},
        )
        assert resp.status_code == 401
        a.reset()
        assert a.stats()["jobs"][SALESFORCE] == []
        assert a.faults()["create_status"] == 201


def test_fault_flags_and_profile_file(tmp_path: Path) -> None:
    args = [
        "--page-size", "2", "--rate-limit", "50", "--retry-after-style", "decimal",
        "--error-rate", "0.2", "--throttle-rate", "0.1", "--activation-delay-ms", "10",
    ]  # fmt: skip
    faults = {"latency_ms": 5, "errors": {"jobs.create": {"500": 0.5}}}
    with running_sandbox(tmp_path, faults=faults, args=args) as sb:
        profile = sb.faults()
        assert profile["page_size"] == 2
        assert profile["rate_limit"] == 50
        assert profile["retry_after_style"] == "decimal"
        assert profile["latency_ms"] == 5
        assert profile["errors"] == {
            "jobs.create": {"500": 0.5},
            "*": {"500": 0.05, "502": 0.05, "503": 0.05, "504": 0.05, "429": 0.1},
        }
        sb.set_faults({})
        assert sb.faults()["page_size"] == 0
        sb.reset()
        assert sb.faults()["page_size"] == 2


def test_seed_file_and_bad_seed(tmp_path: Path) -> None:
    seed = {
        "tenantId": "0b3c7b0e-9f55-4a55-8d0e-1d1d3c1f2a10",
        "applications": [
            {
                "clientId": "2a0cdb4f-b1a8-4d39-9e51-7f5e0e7c9d01",
                "clientSecret": "s",
                "roles": ["Synchronization.ReadWrite.All"],
            }
        ],
        "generate": {"count": 55},
    }
    with running_sandbox(tmp_path / "ok", seed=seed) as sb:
        assert sb.tenant_id == seed["tenantId"]
        assert len(sb.principals()) == 55
        assert sb.info["cert_path"] is None
    with pytest.raises(SandboxError, match="tenantId"):
        start_sandbox(tmp_path / "bad", seed={"applications": []}, timeout_s=10)


def test_main_help_uses_prog_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("usage: provisioner sandbox")


def test_stop_falls_back_to_kill_quickly(tmp_path: Path) -> None:
    sb = start_sandbox(tmp_path)
    began = time.monotonic()
    sb.stop(timeout_s=5)
    # SIGTERM ends it (its shutdown is bounded at 2 s), else the kill after 5 s does; the
    # margin on top is a loaded machine's.
    assert time.monotonic() - began < 10
    assert not sb.alive()
