"""A worker's metrics: each report the workflow makes lands in its own series, read back from the
worker's registry as a scrape would."""

from __future__ import annotations

from workers.metrics import WorkerMetrics


def _value(metrics: WorkerMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_endings_steps_and_calls_are_counted_by_their_labels() -> None:
    m = WorkerMetrics()
    m.finished("failed", "JobQuarantined")
    m.finished("succeeded", None)
    m.action_finished("pause", "succeeded")
    m.step("create_job", "succeeded", 0.3)
    m.graph_call("POST", "jobs.create", 201)
    m.graph_call("GET", "", 0)  # no route name, no answer: counted under the method
    assert _value(m, "provisioner_requests_finished_total", state="failed", code="JobQuarantined")
    assert _value(m, "provisioner_requests_finished_total", state="succeeded", code="") == 1
    assert _value(m, "provisioner_actions_finished_total", action="pause", state="succeeded") == 1
    assert (
        _value(m, "provisioner_step_duration_seconds_count", step="create_job", outcome="succeeded")
        == 1
    )
    assert _value(m, "provisioner_graph_calls_total", route="jobs.create", status="201") == 1
    assert _value(m, "provisioner_graph_calls_total", route="GET", status="0") == 1


def test_only_throttled_retries_and_throttle_waits_add_wait_seconds() -> None:
    m = WorkerMetrics()
    m.retry("throttled", 2.5)
    m.retry("transient", 4.0)
    m.throttle_wait(1.5)
    assert _value(m, "provisioner_graph_retries_total", disposition="throttled") == 1
    assert _value(m, "provisioner_graph_retries_total", disposition="transient") == 1
    assert _value(m, "provisioner_throttle_wait_seconds_total") == 4.0
    assert _value(m, "provisioner_throttle_waits_total") == 1


def test_tokens_health_changes_and_watch_checks() -> None:
    m = WorkerMetrics()
    m.token_acquired()
    m.health_changed("healthy", "quarantined")
    m.watch_check("read")
    m.in_flight.inc()
    assert _value(m, "provisioner_token_acquisitions_total") == 1
    assert (
        _value(
            m,
            "provisioner_application_health_changes_total",
            from_health="healthy",
            to_health="quarantined",
        )
        == 1
    )
    assert _value(m, "provisioner_watch_checks_total", result="read") == 1
    assert _value(m, "provisioner_workflows_in_flight") == 1
