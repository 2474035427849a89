"""A process's metric set: one-line declarations on a registry of its own, the exposition text,
and the registry served over real HTTP (a busy port logged, not fatal)."""

from __future__ import annotations

import asyncio
import socket

import aiohttp

from service.core.metrics import MetricSet
from tests.helpers.redis_server import free_port


def _set() -> MetricSet:
    metrics = MetricSet()
    metrics.counter("probe_calls", "Calls, by route.", "route").labels(route="a").inc(2)
    metrics.gauge("probe_depth", "Depth.").set(7)
    metrics.histogram("probe_seconds", "Time.", "step", buckets=(0.1, 1)).labels(step="s").observe(
        0.5
    )
    return metrics


def test_declared_metrics_are_rendered_with_their_labels() -> None:
    text = _set().render().decode()
    assert 'probe_calls_total{route="a"} 2.0' in text
    assert "probe_depth 7.0" in text
    assert 'probe_seconds_bucket{le="1.0",step="s"} 1.0' in text
    assert 'probe_seconds_bucket{le="0.1",step="s"} 0.0' in text


def test_child_is_kept_per_metric_and_label_values() -> None:
    metrics = MetricSet()
    calls = metrics.counter("probe_calls", "Calls, by route and status.", "route", "status")
    other = metrics.counter("probe_other", "Others, by route and status.", "route", "status")
    first = metrics.child(calls, "a", "200")
    assert metrics.child(calls, "a", "200") is first
    assert metrics.child(calls, "a", "429") is not first
    assert metrics.child(other, "a", "200") is not first
    first.inc()
    metrics.child(calls, "a", "200").inc()
    text = metrics.render().decode()
    assert 'probe_calls_total{route="a",status="200"} 2.0' in text
    assert 'probe_other_total{route="a",status="200"} 0.0' in text


def test_each_set_has_its_own_registry() -> None:
    one, two = _set(), _set()  # the same names twice: no "duplicated timeseries" error
    one.counter("only_here", "Only in one.").inc()
    assert b"only_here" in one.render()
    assert b"only_here" not in two.render()


async def test_the_registry_is_served_over_http() -> None:
    port = free_port()
    stop = _set().serve(port, host="127.0.0.1")
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/") as resp,
        ):
            assert resp.status == 200
            assert 'probe_calls_total{route="a"} 2.0' in await resp.text()
    finally:
        await asyncio.to_thread(stop)
    with socket.socket() as again:  # stopped: the port is free for the next listener
        # (a closed connection's TIME_WAIT may remain; only a live listener refuses this bind)
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
        again.listen()


def test_a_busy_port_is_not_fatal_and_port_zero_serves_nothing() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        _set().serve(busy.getsockname()[1], host="127.0.0.1")  # logged, returns
    _set().serve(0)
