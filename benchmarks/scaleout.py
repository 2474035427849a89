"""(E) Scale-out: the same requests through 1, 2, 4 and 8 worker processes, latency-bound.

Each configuration gets a fresh stack: a sandbox answering after 200-300 ms with a limit far
above what the run reaches, ``--concurrency`` workflows per worker, and ``--requests`` requests
submitted through the API once the workers are up. Wall time runs from the first POST to the
last request finished (intake included, as a caller sees it). Ideal scaling halves the time
per doubling until something shared saturates: here the 2 cores (sandbox, Redis, API and every
worker share them), Redis, or the intake.

    python -m benchmarks.scaleout [--requests 1000] [--concurrency 50] [--workers 1,2,4,8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

import psutil

from benchmarks.report import machine, plot_path, pyplot, table, write_section
from benchmarks.stack import Stack


async def one(n: int, workers: int, concurrency: int) -> dict[str, Any]:
    faults = {
        "latency_ms": 200,
        "latency_spread_ms": 100,
        "rate_limit": 100_000,
        "activation_delay_ms": 100,
    }
    # the sandbox has no limit here: measure the workers, not the adaptive rate's slow start
    env = {
        "PROVISIONER_WORKER_CONCURRENCY": str(concurrency),
        "PROVISIONER_TENANT_RATE_ADAPTIVE": "false",
    }
    cpu_samples: list[float] = []
    psutil.cpu_percent(None)

    def tick(_now: float, _done: dict[str, float]) -> None:
        cpu_samples.append(psutil.cpu_percent(None))

    with Stack(principals=n, faults=faults, workers=workers, env=env) as stack:
        procs = process_groups(stack)
        cpu0 = {name: cpu_s(ps) for name, ps in procs.items()}
        outcome = await stack.run(timeout_s=600, on_tick=tick, tick_s=1.0)
        used = {name: cpu_s(ps) - cpu0[name] for name, ps in procs.items()}
    busy = sum(cpu_samples) / len(cpu_samples) if cpu_samples else float("nan")
    per_req = {name: f"{1000 * s / n:.1f}" for name, s in used.items()}
    # one core's share per process (a worker: the average worker), to see what saturates first
    shares = {k: v / (workers if k == "workers" else 1) / outcome.wall_s for k, v in used.items()}
    busiest = max(shares, key=lambda k: shares[k])
    share = shares[busiest]
    busiest = "a worker" if busiest == "workers" else busiest
    return {
        "workers": workers,
        "in flight max": workers * concurrency,
        "wall_s": round(outcome.wall_s, 1),
        "requests/s": round(n / outcome.wall_s, 1),
        "succeeded": outcome.succeeded,
        "failed": outcome.failed,
        "duplicates": outcome.duplicates,
        "graph_calls": outcome.graph_calls,
        "machine CPU busy": f"{busy:.0f}% of {os.cpu_count()} cores",
        **{f"CPU ms/req {name}": v for name, v in per_req.items()},
        "busiest process": f"{busiest} ({100 * share:.0f}% of a core)",
    }


def process_groups(stack: Stack) -> dict[str, list[psutil.Process]]:
    """The run's processes by role (CPU is read from each at the start and end of the run)."""
    assert stack.redis is not None
    assert stack.sandbox is not None
    assert stack.api is not None
    return {
        "workers": [psutil.Process(w.proc.pid) for w in stack.workers],
        "api": [psutil.Process(stack.api.proc.pid)],
        "sandbox": [psutil.Process(stack.sandbox.proc.pid)],
        "redis": [psutil.Process(stack.redis.proc.pid)],  # type: ignore[union-attr]
    }


def cpu_s(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        t = p.cpu_times()
        total += t.user + t.system
    return total


def plot(rows: list[dict[str, Any]]) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ws = [r["workers"] for r in rows]
    rps = [r["requests/s"] for r in rows]
    ax.plot(ws, rps, marker="o", label="measured")
    ax.plot(ws, [rps[0] * w / ws[0] for w in ws], linestyle="--", label="linear")
    ax.set(xlabel="worker processes", ylabel="requests/s", title="Scale-out (latency-bound)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ws, [str(w) for w in ws])
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = plot_path("scaleout")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path.name


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--workers", default="1,2,4,8")
    args = ap.parse_args()
    rows = []
    for w in [int(x) for x in args.workers.split(",")]:
        rows.append(await one(args.requests, w, args.concurrency))
        print(rows[-1], flush=True)
    base = rows[0]
    for r in rows:
        r["speed-up"] = round(r["requests/s"] / base["requests/s"], 2)
        r["efficiency"] = f"{r['speed-up'] / (r['workers'] / base['workers']):.0%}"
    png = plot(rows)
    cpu_cols = [k for k in rows[0] if k.startswith("CPU ms/req") or k == "busiest process"]
    main_cols = [k for k in rows[0] if k not in cpu_cols]
    size = f"{args.requests} requests" + (
        " (**fewer than the issue's 2,000**)" if args.requests < 2000 else ""
    )
    body = f"""## (E) Scale-out (issue 7.4)

`make bench-scale` - {size} through {", ".join(args.workers.split(","))}
worker processes, `PROVISIONER_WORKER_CONCURRENCY={args.concurrency}` each, fresh stack per
configuration. Sandbox: 200-300 ms per Graph call, limit 100,000 calls/s (never reached), so a
worker alone is bound by Graph latency x its concurrency. Wall = first POST to last request
finished. Speed-up and efficiency are relative to 1 worker within this run. CPU busy = the
whole machine's, averaged over the run (sandbox, Redis, API and workers all share the 2 cores).
Measured {machine()}.

{table(rows, main_cols)}
Where the CPU went (psutil user + system of each process over the run, per request; "workers"
is all worker processes together; busiest = the process nearest to a full core, a worker
counted on average):

{table(rows, ["workers", *cpu_cols])}
![scale-out](benchmarks/{png})
"""
    write_section("scale", body)
    print(body)


if __name__ == "__main__":
    asyncio.run(main())
