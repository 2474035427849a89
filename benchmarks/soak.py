"""(F) Soak: many requests through 2 workers with random sandbox faults; worker memory over time.

The sandbox injects random 429 (Retry-After styles mixed), 5xx, lost create responses,
replication lag and paged template lists. Each worker's RSS (psutil) is sampled every second
with the number of requests finished. Targets (issue 4 item 10): every request succeeded, zero
duplicates (one job per principal, started once), RSS after the run within 20% of the RSS after
the first 200 requests.

    python -m benchmarks.soak [--requests 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import psutil

from benchmarks.report import machine, plot_path, pyplot, table, write_section
from benchmarks.stack import Stack

FAULTS: dict[str, Any] = {
    "latency_ms": 10,
    "latency_spread_ms": 40,
    "errors": {"*": {"429": 0.04, "500": 0.005, "502": 0.005, "503": 0.005, "504": 0.005}},
    "retry_after_style": "mixed",
    "retry_after_s": 1.0,
    "lost_create_rate": 0.03,
    "replication_lag_ms": 300,
    "page_size": 1,
    "activation_delay_ms": 200,
    "random_seed": 2026,
}
TEMPLATES = [{"id": "scim", "default": False}, {"id": "scimV2", "default": True}]


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=50)
    args = ap.parse_args()
    n = args.requests
    # random 429s unrelated to load would read as a limit to the adaptive rate (each one cuts
    # it): this run is about memory and duplicates under faults, so the rate is off
    env = {
        "PROVISIONER_WORKER_CONCURRENCY": str(args.concurrency),
        "PROVISIONER_TENANT_RATE_ADAPTIVE": "false",
    }
    samples: list[tuple[float, float, list[float]]] = []  # (s, finished, RSS MiB per worker)
    with Stack(principals=n, faults=FAULTS, workers=2, env=env) as stack:
        procs = [psutil.Process(w.proc.pid) for w in stack.workers]
        t0 = time.monotonic()

        def tick(now: float, done: dict[str, float]) -> None:
            rss = [p.memory_info().rss / 2**20 for p in procs]
            samples.append((now - t0, sum(done.values()), rss))

        outcome = await stack.run(timeout_s=900, on_tick=tick, tick_s=1.0)
        tick(time.monotonic(), outcome.finished)
    first = next((s for s in samples if s[1] >= 200), samples[0])
    last = samples[-1]
    growth = [b / a - 1 for a, b in zip(first[2], last[2], strict=True)]
    rows = [
        {
            "worker": f"worker-{i}",
            "RSS after 200 (MiB)": round(first[2][i], 1),
            "RSS at end (MiB)": round(last[2][i], 1),
            "peak (MiB)": round(max(s[2][i] for s in samples), 1),
            "growth": f"{100 * growth[i]:+.1f}%",
        }
        for i in range(len(first[2]))
    ]
    result = outcome.row()
    result["faults injected"] = ", ".join(f"{k}: {v}" for k, v in outcome.stats["faults"].items())
    print(result, rows, flush=True)
    png = plot(samples)
    ok_rss = all(abs(g) <= 0.2 for g in growth)
    ok_all = outcome.succeeded == n and outcome.failed == 0
    ok_dup = "met" if outcome.duplicates == 0 else "MISSED"
    short = (
        " (the issue's 2,000 with `BENCH_ARGS='--requests 2000'`; the default is kept short"
        " for `make bench`)"
        if n < 2000
        else ""
    )
    body = f"""## (F) Soak (issue 4 item 10)

`make bench-soak` - {n} requests{short} through 2 workers (`WORKER_CONCURRENCY={args.concurrency}`
each) with random faults on every Graph route: 4% 429 (Retry-After integer / decimal /
HTTP-date / absent in turn), 2% 5xx, 3% of creates made but their answer lost, 300 ms of
replication lag after each create, template lists paged one item a page, 10-50 ms per call.
RSS of each worker process sampled every second (psutil). Measured {machine()}.

{table([result])}
{table(rows)}
- all succeeded: **{"met" if ok_all else "MISSED"}** ({outcome.succeeded}/{n})
- zero duplicates (jobs per principal, starts per job): **{ok_dup}** ({outcome.duplicates})
- RSS at the end within 20% of RSS after the first 200: **{"met" if ok_rss else "MISSED"}**

![soak](benchmarks/{png})
"""
    write_section("soak", body)
    print(body)


def plot(samples: list[tuple[float, float, list[float]]]) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for i in range(len(samples[0][2])):
        ax.plot([s[1] for s in samples], [s[2][i] for s in samples], label=f"worker-{i}")
    ax.set(xlabel="requests finished", ylabel="RSS (MiB)", title="Worker memory over the soak")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = plot_path("soak")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path.name


if __name__ == "__main__":
    asyncio.run(main())
