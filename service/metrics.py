"""A few Prometheus counters and their text exposition, without prometheus-client.

Each app owns an :class:`ApiMetrics` (so tests do not share counts); ``GET /metrics`` renders it
in the Prometheus text format 0.0.4. Only counters are needed so far; keep label values bounded
(route templates, not raw paths).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from service.logs import route_template

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Counter:
    """A monotonically increasing count per label set."""

    def __init__(self, name: str, help_text: str, labelnames: Iterable[str] = ()) -> None:
        self.name = name
        self.help_text = help_text
        self.labelnames = tuple(labelnames)
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        """Add ``amount`` to the series named by ``labels`` (exactly the declared label names)."""
        if amount < 0:
            raise ValueError("a counter only goes up")
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {tuple(labels)}")
        key = tuple(labels[n] for n in self.labelnames)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        """The current value of one series (0 when never incremented)."""
        return self._values.get(tuple(labels[n] for n in self.labelnames), 0.0)

    def render(self) -> list[str]:
        """The exposition lines of this counter."""
        lines = [f"# HELP {self.name} {self.help_text}", f"# TYPE {self.name} counter"]
        with self._lock:
            items = sorted(self._values.items())
        if not items and not self.labelnames:
            items = [((), 0.0)]
        for key, val in items:
            labels = ",".join(
                f'{n}="{_escape(v)}"' for n, v in zip(self.labelnames, key, strict=True)
            )
            series = f"{self.name}{{{labels}}}" if labels else self.name
            lines.append(f"{series} {val:g}")
        return lines


class Registry:
    """A set of counters rendered together."""

    def __init__(self) -> None:
        self._counters: dict[str, Counter] = {}

    def counter(self, name: str, help_text: str, labelnames: Iterable[str] = ()) -> Counter:
        """Create (or return the existing) counter ``name``."""
        if name not in self._counters:
            self._counters[name] = Counter(name, help_text, labelnames)
        return self._counters[name]

    def render(self) -> str:
        """All counters in the Prometheus text format."""
        lines: list[str] = []
        for counter in self._counters.values():
            lines.extend(counter.render())
        return "\n".join(lines) + "\n"


class ApiMetrics:
    """The intake API's counters."""

    def __init__(self) -> None:
        self.registry = Registry()
        self.http_requests = self.registry.counter(
            "provisioner_http_requests_total",
            "HTTP requests answered, by method, route template and status.",
            ("method", "route", "status"),
        )
        self.requests_accepted = self.registry.counter(
            "provisioner_requests_accepted_total",
            "Provisioning requests accepted (stored and queued).",
        )
        self.requests_deduplicated = self.registry.counter(
            "provisioner_requests_deduplicated_total",
            "Provisioning requests answered with an in-flight request for the same app.",
        )

    def render(self) -> str:
        """The exposition text for ``GET /metrics``."""
        return self.registry.render()


def metrics_middleware(metrics: ApiMetrics) -> Middleware:
    """Count every answered request by method, route template and status."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as e:
            status = e.status
            raise
        finally:
            route = route_template(request) or "unmatched"
            method = request.method if request.method in _METHODS else "OTHER"
            metrics.http_requests.inc(method=method, route=route, status=str(status))

    return middleware


def metrics_response(metrics: ApiMetrics) -> web.Response:
    """The ``/metrics`` answer."""
    return web.Response(body=metrics.render().encode(), headers={"Content-Type": CONTENT_TYPE})
