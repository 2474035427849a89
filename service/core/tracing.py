"""Optional OpenTelemetry traces: off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set.

When on (and the ``otel`` extra is installed), spans go to that OTLP/HTTP endpoint: one per API
request (aiohttp server middleware), one per outbound HTTP call (aiohttp client: Graph, the
callbacks), and one per workflow step. Log lines carry the current ``trace_id`` and ``span_id``
so a log line leads to its trace. When off, nothing here imports OpenTelemetry.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, MutableMapping
from typing import Any

from service.core.settings import Settings

_provider: Any = None  # the TracerProvider once set up (a process has one, as OTel wants)


def setup_tracing(settings: Settings, service_name: str, *, server: bool = False) -> bool:
    """Configure the tracer provider and the aiohttp client instrumentation (and, for the API,
    the server's: applications created afterwards get a span-per-request middleware); False
    when tracing is off."""
    global _provider
    if not settings.otel_endpoint or _provider is not None:
        return _provider is not None
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        return False
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    endpoint = settings.otel_endpoint.rstrip("/") + "/v1/traces"
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)
    AioHttpClientInstrumentor().instrument(tracer_provider=provider)
    if server:
        from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor

        AioHttpServerInstrumentor().instrument(tracer_provider=provider)
    _provider = provider
    return True


@contextlib.contextmanager
def span(name: str, **attributes: str | int | None) -> Iterator[None]:
    """A span around a block (a workflow step); a no-op when tracing is off."""
    if _provider is None:
        yield
        return
    tracer = _provider.get_tracer("entra-provisioner")
    with tracer.start_as_current_span(name) as current:
        for key, value in attributes.items():
            if value is not None:
                current.set_attribute(key, value)
        yield


def shutdown_tracing() -> None:
    """Flush buffered spans (at process exit)."""
    if _provider is not None:
        _provider.shutdown()


def add_trace_ids(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: the current trace and span ids, when a span is recording."""
    if _provider is None:
        return event
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event["trace_id"] = format(context.trace_id, "032x")
        event["span_id"] = format(context.span_id, "016x")
    return event
