"""(G) Listing cost against other callers' records (issue 15 item 5).

Redis and the intake API run as separate processes. Another caller ("big") holds N records
(1k, 10k, 100k, written straight into Redis with the store's own index writes); two callers
list theirs through the API: one with 10 records, one with none. For each N: the median and p95
of ``GET /v1/provisioning-requests?limit=1`` and ``?limit=50``, and the Redis commands one list
call costs (``INFO commandstats``). For contrast, the layout before per-caller indexes (one global
index, read and filtered by caller) is measured on the same data, in-process.

    python -m benchmarks.listing [--sizes 1000,10000,100000] [--samples 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

import aiohttp
from redis.asyncio import Redis

from benchmarks.report import machine, plot_path, pyplot, state_dir, table, write_section
from service.core.config_values import hash_api_key
from service.core.models import Record, State
from service.core.store import Store
from tests.helpers.processes import start_api
from tests.helpers.redis_server import RedisServer

QUEUE = "provisioner:queue"
KEYS = {"small": "pk_bench-small-0123456789abcdef", "empty": "pk_bench-empty-0123456789abcdef"}
STATES = (State.SUCCEEDED, State.FAILED, State.CANCELLED, State.QUEUED)


def record(caller: str, i: int) -> Record:
    return Record(
        id=uuid4().hex,
        state=STATES[i % len(STATES)],
        service_principal_id=f"00000000-0000-4000-8000-{i % 5000:012d}",
        caller=caller,
    )


async def seed(store: Store, caller: str, count: int) -> None:
    """Write ``count`` records with the store's own record and index writes, pipelined."""
    for start in range(0, count, 1000):
        async with store.redis.pipeline(transaction=False) as pipe:
            for i in range(start, min(count, start + 1000)):
                store._write(pipe, record(caller, i))
            await pipe.execute()


async def commands(redis: Redis) -> int:
    """Commands run since the last reset, without our own INFO/CONFIG and the clients'
    connection health-check PINGs (redis-py sends one on a connection idle for 15 s)."""
    stats = await redis.info("commandstats")
    skip = ("cmdstat_info", "cmdstat_config", "cmdstat_ping")
    return sum(int(v["calls"]) for k, v in stats.items() if not k.startswith(skip))


async def api_latency(base: str, caller: str, limit: int, samples: int) -> list[float]:
    headers = {"Authorization": f"Bearer {KEYS[caller]}"}
    out: list[float] = []
    async with aiohttp.ClientSession() as session:
        for _ in range(samples):
            t0 = time.perf_counter()
            async with session.get(
                f"{base}/v1/provisioning-requests", params={"limit": str(limit)}, headers=headers
            ) as resp:
                await resp.read()
                assert resp.status == 200, resp.status
            out.append((time.perf_counter() - t0) * 1000)
    return out


async def calls_per_list(base: str, redis: Redis, caller: str) -> int:
    await redis.config_resetstat()
    await api_latency(base, caller, 50, 1)
    return await commands(redis)


async def global_index_list(store: Store, caller: str, limit: int) -> int:
    """What listing cost before: page the all-callers index, keep the caller's (the old
    layout's one global index). Returns the Redis calls one page took."""
    await store.redis.config_resetstat()
    found = 0
    top: float | str = "+inf"
    while found < limit:
        batch = await store.redis.zrevrangebyscore(
            store.keys.caller_index(None), top, "-inf", start=0, num=limit * 2 + 1, withscores=True
        )
        if not batch:
            break
        raws = await store.redis.mget([store.keys.record(m.decode()) for m, _ in batch])
        found += sum(1 for raw in raws if raw and Record.from_json(raw).caller == caller)
        if len(batch) < limit * 2 + 1:
            break
        top = f"({batch[-1][1]}"
    return await commands(store.redis)


def ms(values: list[float], q: float) -> str:
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))]:.2f}"


async def measure(sizes: list[int], samples: int, workdir: Path) -> list[dict[str, Any]]:
    server = RedisServer(workdir / "redis")
    server.start()
    redis = Redis.from_url(server.url)
    store = Store(redis, queue_name=QUEUE, record_ttl_s=30 * 86400)
    env = {
        "PROVISIONER_REDIS_URL": server.url,
        "PROVISIONER_API_KEYS": ",".join(f"{c}:{hash_api_key(k)}" for c, k in KEYS.items()),
        "PROVISIONER_LOG_LEVEL": "WARNING",
    }
    api, base = start_api(env, workdir)
    rows: list[dict[str, Any]] = []
    try:
        await seed(store, "small", 10)
        seeded = 0
        for size in sizes:
            await seed(store, "big", size - seeded)
            seeded = size
            # Once per size: either caller's first page reads the whole global index (the big
            # caller's records are the newest), so the figure is the same for both rows.
            old_t0 = time.perf_counter()
            old_calls = await global_index_list(store, "small", 1)
            old_ms = (time.perf_counter() - old_t0) * 1000
            for caller in ("empty", "small"):
                await api_latency(base, caller, 1, 20)  # warm up
                one = await api_latency(base, caller, 1, samples)
                fifty = await api_latency(base, caller, 50, samples)
                rows.append(
                    {
                        "other callers' records": size,
                        "caller": f"{caller} ({0 if caller == 'empty' else 10} records)",
                        "limit=1 p50 ms": ms(one, 0.5),
                        "limit=1 p95 ms": ms(one, 0.95),
                        "limit=50 p50 ms": ms(fifty, 0.5),
                        "Redis calls/list": await calls_per_list(base, redis, caller),
                        "global index: calls": old_calls,
                        "global index: ms": f"{old_ms:.1f}",
                        "_p50": statistics.median(one),
                        "_old_ms": old_ms,
                    }
                )
                print(rows[-1], flush=True)
    finally:
        api.stop()
        await redis.aclose()
        server.stop()
    return rows


def plot(rows: list[dict[str, Any]]) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    for caller in sorted({r["caller"] for r in rows}):
        mine = [r for r in rows if r["caller"] == caller]
        xs = [r["other callers' records"] for r in mine]
        ax.plot(xs, [r["_p50"] for r in mine], marker="o", label=f"per-caller index: {caller}")
        ax.plot(xs, [r["_old_ms"] for r in mine], ls="--", marker="x", label=f"global: {caller}")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="other callers' stored records",
        ylabel="ms per list call (limit=1)",
        title="Listing latency vs other callers' records",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = plot_path("listing")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path.name


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--samples", type=int, default=200)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-listing-", dir=state_dir()) as tmp:
        rows = await measure(sizes, args.samples, Path(tmp))
    png = plot(rows)
    ratios = {}
    for caller in {r["caller"] for r in rows}:
        mine = [r for r in rows if r["caller"] == caller]
        ratios[caller] = mine[-1]["_p50"] / mine[0]["_p50"]
    worst = max(ratios, key=lambda c: ratios[c])
    verdict = "met" if ratios[worst] < 2 else "MISSED"
    shown = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    body = f"""## (G) Listing cost vs other callers' records (issue 15 item 5)

`make bench-listing` - Redis and the intake API as processes; another caller holds N records
(a mix of states, 5,000 principals), and two callers list theirs through the API
({args.samples} calls per cell). "Redis calls/list" counts the commands one `limit=50` list
call costs (`INFO commandstats`). The last two columns replay the layout before this change
(one global index read and filtered by caller, in-process) on the same data, for contrast,
once per N (either caller's first page reads the whole index: the other caller's records are
the newest). Measured {machine()}.

{table(shown)}
Target: list latency flat from {sizes[0]:,} to {sizes[-1]:,} stored records - **{verdict}**
(largest ratio p50 at {sizes[-1]:,} / p50 at {sizes[0]:,}: {ratios[worst]:.2f}, {worst}; the
Redis calls per list do not change with N at all).

![listing](benchmarks/{png})
"""
    write_section("listing", body)
    print(body)


if __name__ == "__main__":
    asyncio.run(main())
