"""deploy/observability: alert rules and the dashboard only use metrics the service exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from service.api.metrics import ApiMetrics
from workers.metrics import WorkerMetrics

OBS = Path(__file__).resolve().parents[1] / "deploy" / "observability"
METRIC = re.compile(r"\bprovisioner_[a-z_]+")


def exported() -> set[str]:
    names: set[str] = set()
    for registry in (ApiMetrics().registry, WorkerMetrics().registry):
        for family in registry.collect():
            names.add(family.name)
            names.update(sample.name for sample in family.samples)
            if family.type == "counter":
                names.add(family.name + "_total")
            if family.type == "histogram":
                names.update(family.name + s for s in ("_bucket", "_count", "_sum"))
    return names


def test_alert_rules_are_well_formed_and_use_real_metrics() -> None:
    rules = yaml.safe_load((OBS / "alerts.yaml").read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert {a["alert"] for a in alerts} >= {
        "ProvisioningRequestsStuck",
        "ProvisioningFailureRatioHigh",
        "GraphThrottlingSustained",
        "NoLiveProvisioningWorker",
    }
    known = exported()
    for alert in alerts:
        assert set(alert) <= {"alert", "expr", "for", "labels", "annotations"}
        assert alert["labels"]["severity"] in {"page", "ticket"}
        assert alert["annotations"]["runbook"].startswith("docs/runbook.md#")
        used = set(METRIC.findall(alert["expr"]))
        assert used, alert["alert"]
        assert used <= known, used - known


def test_runbook_anchors_exist() -> None:
    runbook = (OBS.parents[1] / "docs" / "runbook.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", h.lower()).strip().replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", runbook, re.M)
    }
    rules = yaml.safe_load((OBS / "alerts.yaml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["annotations"]["runbook"].split("#")[1] in anchors


def test_dashboard_panels_use_real_metrics() -> None:
    dashboard = json.loads((OBS / "grafana-dashboard.json").read_text())
    known = exported()
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    for expr in exprs:
        used = set(METRIC.findall(expr))
        assert used <= known, used - known
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
