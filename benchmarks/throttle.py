"""(A) Tenant throttle coordination: 4 workers x 200 requests against a tenant limited to R calls/s.

The same run twice, each on a fresh stack: with coordination (the shared Redis token bucket at
``BUCKET_FRACTION`` of R, plus the cool-down key after a 429) and with
``PROVISIONER_THROTTLE_COORDINATION=false`` (each worker only honours the Retry-After of its own
calls). Target (issue 4 item 5): with coordination fewer than 2% of Graph calls answered 429.

    python -m benchmarks.throttle [--requests 800] [--workers 4] [--rate 80]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from benchmarks.report import machine, plot_path, pyplot, table, write_section
from benchmarks.stack import Outcome, Stack

BUCKET_FRACTION = 0.9
BURST = 4


async def one_run(
    n: int, workers: int, rate: int, coordinate: bool
) -> tuple[Outcome, list[tuple[float, float, int]]]:
    env = {
        "PROVISIONER_THROTTLE_COORDINATION": "true" if coordinate else "false",
        "PROVISIONER_TENANT_RATE_LIMIT": str(rate * BUCKET_FRACTION) if coordinate else "0",
        "PROVISIONER_TENANT_RATE_BURST": str(BURST),
    }
    faults = {
        "rate_limit": rate,
        "rate_window_s": 1.0,
        "activation_delay_ms": 100,
        "random_seed": 7,
    }
    timeline: list[tuple[float, float, int]] = []  # (s since start, finished, 429 so far)
    with Stack(principals=n, faults=faults, workers=workers, env=env) as stack:
        assert stack.sandbox is not None
        sandbox = stack.sandbox
        t0 = time.monotonic()

        def tick(now: float, done: dict[str, float]) -> None:
            calls = sandbox.stats()["calls"]
            t429 = sum(v.get("429", 0) for k, v in calls.items() if k != "token")
            timeline.append((now - t0, sum(done.values()), t429))

        outcome = await stack.run(timeout_s=600, on_tick=tick, tick_s=1.0)
    return outcome, timeline


def plot(runs: dict[str, list[tuple[float, float, int]]], rate: int) -> str:
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for label, tl in runs.items():
        ax1.plot([t for t, _, _ in tl], [d for _, d, _ in tl], label=label)
        ax2.plot([t for t, _, _ in tl], [c for _, _, c in tl], label=label)
    ax1.set(xlabel="seconds", ylabel="requests finished", title="Progress")
    ax2.set(xlabel="seconds", ylabel="Graph calls answered 429 (cumulative)", title="Throttled")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"4.5 throttle coordination, tenant limit {rate} calls/s")
    fig.tight_layout()
    path = plot_path("throttle")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path.name


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=800)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--rate", type=int, default=80, help="sandbox limit R, calls/s")
    args = ap.parse_args()
    rows: list[dict[str, Any]] = []
    timelines = {}
    results = {}
    for coordinate in (True, False):
        label = "coordinated" if coordinate else "uncoordinated"
        outcome, tl = await one_run(args.requests, args.workers, args.rate, coordinate)
        results[label] = outcome
        timelines[label] = tl
        calls_per_s = outcome.graph_calls / outcome.wall_s
        rows.append(
            {
                "run": label,
                **outcome.row(),
                "calls/s": f"{calls_per_s:.1f}",
                "floor_s": f"{(outcome.graph_calls - outcome.throttled) / args.rate:.1f}",
            }
        )
        print(label, rows[-1], flush=True)
    png = plot(timelines, args.rate)
    on, off = results["coordinated"], results["uncoordinated"]
    verdict = "met" if on.throttled_ratio < 0.02 and on.failed == 0 else "MISSED"
    body = f"""## (A) Tenant throttle coordination (issue 4 item 5)

`make bench-throttle` - {args.workers} workers, {args.requests} requests for {args.requests}
principals, sandbox limited to R = {args.rate} Graph calls/s (sliding 1 s window, excess answered
429 + Retry-After), replication lag off, activation after 100 ms. Coordinated: shared token
bucket `PROVISIONER_TENANT_RATE_LIMIT={args.rate * BUCKET_FRACTION:g}` ({BUCKET_FRACTION:.0%}
of R), burst {BURST}, plus the cool-down key. Uncoordinated:
`PROVISIONER_THROTTLE_COORDINATION=false`. `floor_s` = admitted calls / R, the least time the
tenant limit allows. Duplicates = extra jobs per principal + extra starts per job (sandbox stats).
Measured {machine()}.

{table(rows)}
Target: fewer than 2% of calls answered 429 with coordination - **{verdict}**
({100 * on.throttled_ratio:.2f}% coordinated vs {100 * off.throttled_ratio:.2f}% uncoordinated;
wall time ratio coordinated/uncoordinated = {on.wall_s / off.wall_s:.2f}).

![throttle](benchmarks/{png})
"""
    write_section("throttle", body)
    print(body)


if __name__ == "__main__":
    asyncio.run(main())
