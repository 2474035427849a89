"""A process's Prometheus metrics: a registry of its own and the one way to declare on it.

The API (:class:`~service.api.metrics.ApiMetrics`) and each worker
(:class:`~workers.metrics.WorkerMetrics`) build on :class:`MetricSet`, so a metric is declared in
one line, name, help and labels, and tests never share counts across registries. The API serves
:meth:`MetricSet.render` at ``GET /metrics``; a worker serves its registry on its own port.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)

log = structlog.get_logger("service.core.metrics")
M = TypeVar("M", Counter, Gauge, Histogram)


class MetricSet:
    """A registry and the metrics declared on it."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}

    def child(self, metric: M, *values: str) -> M:
        """``metric.labels(*values)``, kept: prometheus-client validates the values and takes
        a lock on every ``labels()`` call, and a process uses few, fixed label sets (values
        in the order the labels were declared)."""
        key = (metric, values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found

    def counter(self, name: str, doc: str, *labels: str) -> Counter:
        """A counter (exposed with ``_total``) by ``labels``."""
        return Counter(name, doc, labels, registry=self.registry)

    def gauge(self, name: str, doc: str, *labels: str) -> Gauge:
        """A gauge by ``labels``."""
        return Gauge(name, doc, labels, registry=self.registry)

    def histogram(self, name: str, doc: str, *labels: str, buckets: Sequence[float]) -> Histogram:
        """A histogram by ``labels`` over ``buckets`` (seconds)."""
        return Histogram(name, doc, labels, buckets=buckets, registry=self.registry)

    def render(self) -> bytes:
        """The exposition text."""
        return generate_latest(self.registry)

    def serve(self, port: int, host: str = "0.0.0.0") -> Callable[[], None]:
        """Expose the registry over HTTP and return what stops it (nothing is served for port 0;
        a busy port is logged, not fatal: a second worker on a host runs without metrics)."""
        if port <= 0:
            return _nothing
        try:
            server, thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as e:
            log.warning("metrics_port_unavailable", port=port, error=str(e))
            return _nothing

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

        return stop


def _nothing() -> None:
    """What stops a listener that never started."""
