"""A worker's Prometheus metrics, served on its own port (``PROVISIONER_WORKER_METRICS_PORT``).

The workflow reports through :class:`WorkerMetrics`' small methods and never sees
prometheus-client; each worker process has its own registry and HTTP listener
(:class:`~service.core.metrics.MetricSet`).
"""

from __future__ import annotations

from service.core.metrics import MetricSet


class WorkerMetrics(MetricSet):
    """Counters and histograms of one worker process."""

    def __init__(self) -> None:
        super().__init__()
        self._finished = self.counter(
            "provisioner_requests_finished",
            "Requests that reached a terminal state, by state and error code.",
            "state",
            "code",
        )
        self._actions = self.counter(
            "provisioner_actions_finished",
            "Requests that ended, by action and final state.",
            "action",
            "state",
        )
        self._steps = self.histogram(
            "provisioner_step_duration_seconds",
            "Duration of one run of a workflow step, by step and outcome.",
            "step",
            "outcome",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self._graph = self.counter(
            "provisioner_graph_calls",
            "Graph calls by route and HTTP status (0: no answer).",
            "route",
            "status",
        )
        self._retries = self.counter(
            "provisioner_graph_retries",
            "Graph calls retried, by why (throttled, transient, consistency, ambiguous).",
            "disposition",
        )
        self._throttle_waits = self.counter(
            "provisioner_throttle_waits", "Calls held by the tenant throttle."
        )
        self._throttle_seconds = self.counter(
            "provisioner_throttle_wait_seconds",
            "Seconds calls were held by the tenant throttle or Retry-After.",
        )
        self._tokens = self.counter(
            "provisioner_token_acquisitions",
            "Access tokens fetched from Entra ID (not from msal's cache).",
        )
        self._health_changes = self.counter(
            "provisioner_application_health_changes",
            "Changes of a watched job's health, by previous and new health.",
            "from_health",
            "to_health",
        )
        self._watch_checks = self.counter(
            "provisioner_watch_checks",
            "Health-watch checks of a job, by result (read, gone, error).",
            "result",
        )
        self.in_flight = self.gauge(
            "provisioner_workflows_in_flight", "Workflow runs executing now."
        )

    def finished(self, state: str, code: str | None) -> None:
        """A request ended."""
        self.child(self._finished, state, code or "").inc()

    def action_finished(self, action: str, state: str) -> None:
        """A request of ``action`` ended in ``state``."""
        self.child(self._actions, action, state).inc()

    def step(self, step: str, outcome: str, seconds: float) -> None:
        """A step run ended with an outcome."""
        self.child(self._steps, step, outcome).observe(seconds)

    def graph_call(self, method: str, route: str, status: int) -> None:
        """A Graph call was answered (status 0: it was not)."""
        self.child(self._graph, route or method, str(status)).inc()

    def retry(self, disposition: str, wait_s: float) -> None:
        """A failed call will be tried again after ``wait_s``."""
        self.child(self._retries, disposition).inc()
        self._throttle_seconds.inc(wait_s if disposition == "throttled" else 0)

    def throttle_wait(self, seconds: float) -> None:
        """A call was held by the shared cool-down or rate limit."""
        self._throttle_waits.inc()
        self._throttle_seconds.inc(seconds)

    def token_acquired(self) -> None:
        """msal fetched a token from the network."""
        self._tokens.inc()

    def health_changed(self, previous: str, health: str) -> None:
        """The watch saw a job's health change."""
        self.child(self._health_changes, previous, health).inc()

    def watch_check(self, result: str) -> None:
        """The watch checked a job (one Graph GET, retries aside)."""
        self.child(self._watch_checks, result).inc()
