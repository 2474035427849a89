"""An open-loop load generator (a separate process): POSTs at a fixed rate, prints JSON.

Latency is measured from each request's *scheduled* time, so a server that falls behind is not
flattered by the generator slowing down with it (no coordinated omission).

    python -m benchmarks.loadgen --url URL --key KEY --rate 300 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid

import aiohttp


async def run(url: str, key: str, rate: float, seconds: float, connections: int) -> dict:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def one(scheduled: float) -> None:
            nonlocal errors
            body = json.dumps({"servicePrincipalId": str(uuid.uuid4())})
            try:
                async with session.post(url, data=body) as resp:
                    await resp.read()
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1
            except aiohttp.ClientError:
                errors += 1
                return
            latencies.append(time.perf_counter() - scheduled)

        tasks = []
        start = time.perf_counter()
        n = int(rate * seconds)
        for i in range(n):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(scheduled)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    latencies.sort()

    def pct(p: float) -> float:
        if not latencies:
            return 0.0
        return 1000 * latencies[min(len(latencies) - 1, int(p * len(latencies)))]

    return {
        "target_rate": rate,
        "sent": n,
        "achieved_rate": round(len(latencies) / elapsed, 1),
        "p50_ms": round(pct(0.50), 2),
        "p99_ms": round(pct(0.99), 2),
        "max_ms": round(1000 * latencies[-1], 2) if latencies else 0,
        "statuses": statuses,
        "errors": errors,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--key", default="")
    ap.add_argument("--rate", type=float, required=True)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--connections", type=int, default=64)
    args = ap.parse_args()
    result = asyncio.run(run(args.url, args.key, args.rate, args.seconds, args.connections))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
