"""(D) Worker cost: CPU ms and Redis round trips per completed request, at 50 and 1,000 in flight.

For each level one worker process with ``PROVISIONER_WORKER_CONCURRENCY`` = that level (arq
``max_jobs``) drains requests that were queued through the API before it started (so the API's
own Redis commands are not counted). Measured over the drain: the worker's CPU time (psutil,
user + system; waiting on Graph costs none), Redis round trips (``total_reads_processed`` in
``INFO stats``: one read event per request the worker sends, a pipeline, ``MULTI`` block or
script counting once), Redis ``INFO commandstats`` deltas, completions per second, the
in-flight gauge and the event-loop lag (a probe inside the worker, enabled by
``PROVISIONER_BENCH_LOOP_LAG_FILE``: how late a 50 ms sleep wakes up). The sandbox answers
without a rate limit, slowly enough that the worker holds the level in flight. Targets (issue
14.3): <= 5 ms CPU and <= 15 Redis round trips per request at both levels, lag p99 < 50 ms.
After each drain, :mod:`benchmarks.bare_worker` makes the same Graph calls and Redis round trips
per request (and as many bytes per round trip), at the same level, from aiohttp and redis-py
alone: the floor those two libraries set on this machine, read beside the worker's figure.

``--profile`` runs the worker under pyinstrument instead (at the last level) and writes the text
report to ``benchmarks/profiles/worker-profile.txt`` (the doc section is not rewritten then).

    python -m benchmarks.worker_cost [--levels 50 1000] [--requests N] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import psutil
import redis as redis_sync

from benchmarks.report import PROFILES, machine, plot_path, pyplot, table, write_section
from benchmarks.stack import Stack, metrics_text
from tests.helpers.processes import Child
from tests.helpers.redis_server import free_port

#: Per level: requests drained and the sandbox's latency per call (plus up to the spread).
#: Long calls at 1,000 so that the worker keeps 1,000 in flight without running out of CPU
#: (with 1-2 s it peaked near 800: slots freed faster than the worker refilled them).
LEVELS = {50: (1000, 250, 500), 1000: (3000, 2500, 1000)}

#: Requests the bare loop makes per level (at least this many rounds of the level).
BARE_REQUESTS, BARE_ROUNDS = 300, 1

#: Commands the earlier estimate counted as a round trip of their own (plus one per EXEC). It
#: errs high (a GET or EXISTS inside a MULTI block or a script counts too) and is kept beside the
#: measured figure only to compare with the figures published before.
STANDALONE = (
    "get",
    "exists",
    "watch",
    "unwatch",
    "zscore",
    "eval",
    "evalsha",
    "zrangebyscore",
    "info",
    "ping",
    "mget",
    "scan",
)


def redis_counts(url: str) -> tuple[dict[str, int], int, int]:
    """``INFO commandstats`` calls per command, ``total_reads_processed`` and
    ``total_net_input_bytes``."""
    client = redis_sync.Redis.from_url(url)
    try:
        info = client.info("commandstats")
        stats = client.info("stats")
    finally:
        client.close()
    calls = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}
    return calls, int(stats["total_reads_processed"]), int(stats["total_net_input_bytes"])


def bare_cpu_ms(stack: Stack, n: int, concurrency: int, calls: int, trips: int, size: int) -> float:
    """CPU ms per request of :mod:`benchmarks.bare_worker` on ``stack`` (its own process)."""
    argv = [sys.executable, "-m", "benchmarks.bare_worker"]
    argv += [str(v) for v in (n, concurrency, calls, trips, size)]
    ids = json.dumps(stack.principal_ids()[:n])
    env = {**os.environ, **stack.env}
    done = subprocess.run(argv, input=ids, capture_output=True, text=True, env=env, check=True)
    return 1000 * float(json.loads(done.stdout.splitlines()[-1])["cpu_s"]) / n


def gauge(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))]


@dataclass
class Level:
    """One drain's measurements."""

    summary: dict[str, Any]
    commands: dict[str, int]
    in_flight: list[tuple[float, float, float]] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)


async def drain(n: int, concurrency: int, latency_ms: int, spread_ms: int, profile: bool) -> Level:
    """Queue ``n`` requests, then let one worker with ``max_jobs = concurrency`` drain them."""
    faults = {"latency_ms": latency_ms, "latency_spread_ms": spread_ms, "activation_delay_ms": 100}
    env = {"PROVISIONER_WORKER_CONCURRENCY": str(concurrency)}
    with Stack(principals=n, faults=faults, workers=0, env=env) as stack:
        assert stack.redis is not None
        await stack.submit(stack.principal_ids(), concurrency=32)
        lag_file = stack.dir / "lag.jsonl"
        worker_env = {
            **stack.env,
            "PROVISIONER_WORKER_NAME": "bench-0",
            "PROVISIONER_BENCH_LOOP_LAG_FILE": str(lag_file),
            "PROVISIONER_WORKER_METRICS_PORT": str(free_port()),
        }
        PROFILES.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "service.cli.main", "worker"]
        if profile:
            out = str(PROFILES / "worker-profile.txt")
            argv = [sys.executable, "-m", "pyinstrument", "-r", "text", "-o", out, "-m", *argv[2:]]
        before_cmds, before_reads, before_bytes = redis_counts(stack.redis.url)
        worker = Child("worker-0", argv, worker_env, stack.dir)
        worker.metrics_port = int(worker_env["PROVISIONER_WORKER_METRICS_PORT"])
        stack.workers.append(worker)
        proc = psutil.Process(worker.proc.pid)
        cpu0 = proc.cpu_times()
        began = time.monotonic()
        in_flight: list[tuple[float, float, float]] = []  # (s, in flight, finished)

        def tick(now: float, done: dict[str, float]) -> None:
            try:
                text = metrics_text(worker.metrics_port)
            except OSError:
                return
            flight = gauge(text, "provisioner_workflows_in_flight")
            in_flight.append((now - began, flight, sum(done.values())))

        done = await stack.wait_finished(n, timeout_s=900, on_tick=tick, tick_s=2.0)
        wall = time.monotonic() - began
        cpu1 = proc.cpu_times()
        after_cmds, after_reads, after_bytes = redis_counts(stack.redis.url)
        stats = stack.sandbox.stats() if stack.sandbox else {}
        worker.stop(timeout_s=60)  # pyinstrument writes its report at exit
        stack.workers.remove(worker)
        # the two INFO calls of redis_counts after the drain are reads of their own
        reads = after_reads - before_reads - 2
        finished = max(1.0, sum(done.values()))
        graph_calls = sum(
            sum(v.values()) for route, v in stats.get("calls", {}).items() if route != "token"
        )
        bare = float("nan")
        if not profile:
            bare = bare_cpu_ms(
                stack,
                min(n, max(BARE_REQUESTS, BARE_ROUNDS * concurrency)),
                concurrency,
                round(graph_calls / finished),
                round(reads / finished),
                (after_bytes - before_bytes) // max(1, reads),
            )
        lags: list[float] = []
        if lag_file.exists():
            for line in lag_file.read_text().splitlines():
                lags.extend(json.loads(line))
    cpu_s = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    deltas = {k: after_cmds.get(k, 0) - before_cmds.get(k, 0) for k in after_cmds}
    deltas = {k: v for k, v in deltas.items() if v > 0}
    estimate = deltas.get("exec", 0) + sum(deltas.get(c, 0) for c in STANDALONE)
    summary = {
        "requests": n,
        "Graph latency per call s": f"{latency_ms / 1000:g}-{(latency_ms + spread_ms) / 1000:g}",
        "finished": int(finished),
        "succeeded": int(done.get("succeeded", 0)),
        "wall_s": round(wall, 1),
        "requests/s (1 worker)": round(finished / wall, 1),
        "max in flight seen": int(max((f for _, f, _ in in_flight), default=0)),
        "median in flight (2 s samples)": int(percentile([f for _, f, _ in in_flight], 0.5)),
        "worker CPU s": round(cpu_s, 1),
        "CPU ms/request": round(1000 * cpu_s / finished, 2),
        "bare aiohttp + redis-py, same calls and round trips: CPU ms/request": round(bare, 2),
        "worker CPU / bare": round(1000 * cpu_s / finished / bare, 2),
        "Redis round trips/request": round(reads / finished, 1),
        "Redis round trips/request (earlier estimate)": round(estimate / finished, 1),
        "Redis commands/request": round(sum(deltas.values()) / finished, 1),
        "Graph calls/request": round(graph_calls / finished, 2),
        "loop lag p50 ms": round(percentile(lags, 0.5), 1),
        "loop lag p99 ms": round(percentile(lags, 0.99), 1),
        "loop lag max ms": round(max(lags, default=float("nan")), 1),
    }
    print(concurrency, summary, flush=True)
    return Level(summary, deltas, in_flight, lags)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--levels", type=int, nargs="+", default=list(LEVELS))
    ap.add_argument("--requests", type=int, help="per level (default: LEVELS)")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    if args.profile:  # the last level given (1,000 by default)
        level = args.levels[-1]
        n, latency, spread = LEVELS.get(level, LEVELS[1000])
        await drain(args.requests or n, level, latency, spread, profile=True)
        print((PROFILES / "worker-profile.txt").read_text()[:6000])
        return
    results: dict[int, Level] = {}
    for level in args.levels:
        n, latency, spread = LEVELS.get(level, LEVELS[1000])
        results[level] = await drain(args.requests or n, level, latency, spread, profile=False)
    write_section("worker", body(results))
    print(body(results))


def body(results: dict[int, Level]) -> str:
    levels = sorted(results)
    names = [f"{level} in flight" for level in levels]
    first = results[levels[0]].summary
    pairs = list(zip(names, levels, strict=True))
    rows = [{"metric": k, **{nm: results[lv].summary[k] for nm, lv in pairs}} for k in first]
    verdicts = []
    for level in levels:
        s = results[level].summary
        ok = (
            s["CPU ms/request"] <= 5
            and s["Redis round trips/request"] <= 15
            and s["loop lag p99 ms"] < 50
        )
        verdicts.append(
            f"{level} in flight: {s['CPU ms/request']} ms CPU, "
            f"{s['Redis round trips/request']} round trips, lag p99 {s['loop lag p99 ms']} ms: "
            f"**{'met' if ok else 'MISSED'}** (aiohttp + redis-py alone: "
            f"{s['bare aiohttp + redis-py, same calls and round trips: CPU ms/request']} ms)"
        )
    cmds = sorted(
        {c for lv in levels for c in results[lv].commands},
        key=lambda c: -results[levels[-1]].commands.get(c, 0),
    )
    cmd_rows = [
        {
            "command": c,
            **{
                f"per request, {name}": round(
                    results[lv].commands.get(c, 0) / results[lv].summary["finished"], 2
                )
                for name, lv in zip(names, levels, strict=True)
            },
        }
        for c in cmds
    ]
    top = levels[-1]
    png = plot(top, results[top].in_flight, results[top].lags)
    return f"""## (D) Worker cost (issue 14.3)

`make bench-worker` - for each level, one worker process with
`PROVISIONER_WORKER_CONCURRENCY` = the level (arq `max_jobs`) drains requests queued through the
API before it started (the API's Redis commands are not counted). Sandbox: no rate limit, a
latency per call long enough that the worker holds the level in flight (at 1,000: 2.5-3.5 s;
with 1-2 s it peaked near 800: slots freed faster than the worker refilled them); the adaptive
tenant rate runs on default settings (one `EVALSHA` per call, its slow start on the way).
CPU = the worker process's user + system time over the drain (psutil), so time spent waiting
for Graph is excluded by construction; it includes arq's polling, the metrics endpoint scraped
every 2 s and the lag probe. Round trips = Redis's `total_reads_processed` over the drain (one
read event per request sent: a pipeline, a `MULTI ... EXEC` block or a script counts once; the
worker's connections carry one request at a time). The earlier estimate (one per `EXEC` plus
every `GET`, `EXISTS`, `EVAL`..., even inside a block or script) is kept for comparison with the
figures published before. "Bare" = `benchmarks/bare_worker.py` after the drain, on the same
stack and level: the same number of Graph calls (GETs whose JSON is parsed, over the same TLS
session and msal token) and Redis round trips per request (a script storing as many bytes as
the worker sent per round trip), with nothing else: what aiohttp and redis-py alone cost here.
Lag = how late a 50 ms sleep in the worker's event loop woke up
(`PROVISIONER_BENCH_LOOP_LAG_FILE`, `workers/main.py`).
Measured {machine()}.

{table(rows)}
Targets (<= 5 ms CPU and <= 15 round trips per request, lag p99 < 50 ms):
{"; ".join(verdicts)}.

Redis commands per request by type over the drain (a script's inner commands counted too):

{table(cmd_rows)}
![worker](benchmarks/{png})
"""


def plot(level: int, in_flight: list[tuple[float, float, float]], lags: list[float]) -> str:
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot([t for t, _, _ in in_flight], [f for _, f, _ in in_flight], label="in flight")
    ax1.plot([t for t, _, _ in in_flight], [d for _, _, d in in_flight], label="finished")
    ax1.set(xlabel="seconds", title=f"One worker, max_jobs {level}")
    ax1.legend()
    ax1.grid(alpha=0.3)
    ax2.plot([i * 0.05 for i in range(len(lags))], lags, linewidth=0.6)
    ax2.axhline(50, color="red", linestyle="--", linewidth=1, label="50 ms")
    ax2.set(xlabel="seconds (approx.)", ylabel="ms", title="Event-loop lag")
    ax2.legend()
    fig.tight_layout()
    path = plot_path("worker")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path.name


if __name__ == "__main__":
    asyncio.run(main())
