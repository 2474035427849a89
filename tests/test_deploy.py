"""deploy/: each file passes its tool's own linter or schema, and agrees with the code."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.cli.main import _parser
from service.core.settings import Settings

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
BIN = Path(sys.executable).parent


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_dockerfile_passes_hadolint() -> None:
    result = _run(str(BIN / "hadolint"), str(DEPLOY / "Dockerfile"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_matches_the_compose_spec() -> None:
    result = _run(
        str(BIN / "check-jsonschema"),
        "--builtin-schema",
        "vendor.compose-spec",
        str(DEPLOY / "compose.yaml"),
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_kubernetes_manifests_match_the_kubernetes_schemas() -> None:
    files = [
        str(p) for p in sorted((DEPLOY / "kubernetes").glob("*.yaml")) if p.name != "keda.yaml"
    ]
    result = _run(str(BIN / "kubernetes-validate"), "--strict", *files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed" in result.stdout


def test_entrypoints_are_real_cli_commands() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["provisioner"]' in dockerfile
    assert re.search(r"^USER 10001$", dockerfile, re.M), "the image must not run as root"
    parser = _parser()
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    commands = [svc["command"] for name, svc in compose["services"].items() if name != "redis"]
    for doc in _docs(DEPLOY / "kubernetes" / "api.yaml") + _docs(
        DEPLOY / "kubernetes" / "worker.yaml"
    ):
        if doc["kind"] == "Deployment":
            commands.append(doc["spec"]["template"]["spec"]["containers"][0]["args"])
    for argv in commands:
        parser.parse_args(argv)  # exits on an unknown command or option


def test_worker_grace_period_outlasts_a_step() -> None:
    config = _docs(DEPLOY / "kubernetes" / "configmap.yaml")[0]["data"]
    step_timeout = int(config.get("PROVISIONER_STEP_TIMEOUT_S", Settings().step_timeout_s))
    worker = next(
        d for d in _docs(DEPLOY / "kubernetes" / "worker.yaml") if d["kind"] == "Deployment"
    )
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > step_timeout
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    grace = compose["services"]["worker"]["stop_grace_period"]
    assert int(grace.rstrip("s")) > step_timeout


def test_probes_hit_real_routes() -> None:
    from service.api.app import create_app

    app = create_app(Settings(redis_url="redis://127.0.0.1:1/0"))
    paths = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    api = next(d for d in _docs(DEPLOY / "kubernetes" / "api.yaml") if d["kind"] == "Deployment")
    container = api["spec"]["template"]["spec"]["containers"][0]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] in paths


def test_keda_scales_the_worker_deployment() -> None:
    # KEDA's CRD schema is not available offline: check what ties it to our manifests.
    [scaled] = _docs(DEPLOY / "kubernetes" / "keda.yaml")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["kind"] == "ScaledObject"
    worker = next(
        d for d in _docs(DEPLOY / "kubernetes" / "worker.yaml") if d["kind"] == "Deployment"
    )
    assert scaled["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    assert "provisioner_queue_depth" in trigger["metadata"]["query"]


@pytest.mark.parametrize("name", ["api.yaml", "worker.yaml"])
def test_secrets_are_referenced_not_inlined(name: str) -> None:
    for doc in _docs(DEPLOY / "kubernetes" / name):
        assert doc["kind"] != "Secret"
        text = yaml.safe_dump(doc)
        assert "CLIENT_SECRET:" not in text
