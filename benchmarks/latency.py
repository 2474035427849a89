"""Latency of one request, unthrottled (issue 14.5), and Graph calls per app (issue 14.2).

One worker, nothing else running; requests one after the other (no queueing anywhere). For
each: the time from the POST being sent to the synchronization job being started (the
``start_job`` history entry, written when Graph answered the start call), against the Graph
round trips the workflow made up to then (the sandbox's latency per call, measured from this
process over a kept-alive HTTPS connection as the worker makes them) + 50 ms.

    python -m benchmarks.latency [--requests 30] [--latency-ms 100]
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import statistics
import time
from datetime import datetime
from typing import Any

import aiohttp

from benchmarks.clients import NaiveClient
from benchmarks.report import machine, table, write_section
from benchmarks.stack import API_KEY, Stack

# Graph calls up to the start on the happy path: every call but verify's (one GET of the job
# after the start)
BEFORE_START = ("templates.list", "jobs.list", "jobs.create", "jobs.start")


async def started_after(
    stack: Stack, session: aiohttp.ClientSession, sp: str
) -> tuple[float, dict[str, float]]:
    """Seconds from the POST to the job's start (server clock, same machine), and where they
    went: the API's answer, the worker's pick-up (from ``createdAt`` to the first step's
    beginning: arq's poll, the claim, the token), the steps and the gaps between them."""
    sent = time.time()
    url = f"{stack.base}/v1/provisioning-requests"
    async with session.post(url, json={"servicePrincipalId": sp}) as resp:
        body = await resp.json()
    answered = time.time()
    rid = body["id"]
    while True:
        async with session.get(f"{url}/{rid}") as resp:
            record = await resp.json()
        history = record.get("history", [])
        for i, entry in enumerate(history):
            if entry.get("step") == "start_job" and entry.get("outcome") != "retrying":
                steps = [h for h in history[: i + 1] if h.get("step")]
                at = datetime.fromisoformat(entry["at"]).timestamp()
                return at - sent, _parts(record, steps, sent, answered, at)
        if record.get("state") in ("failed", "cancelled"):
            raise RuntimeError(f"request {rid} {record['state']}: {record.get('error')}")
        await asyncio.sleep(0.005)


def _parts(
    record: dict[str, Any], steps: list[dict[str, Any]], sent: float, answered: float, at: float
) -> dict[str, float]:
    created = datetime.fromisoformat(record["createdAt"]).timestamp()
    in_steps = sum((h.get("durationMs") or 0) / 1000 for h in steps)
    first = steps[0]
    began = datetime.fromisoformat(first["at"]).timestamp() - (first.get("durationMs") or 0) / 1000
    return {
        "POST answered": answered - sent,
        "pick-up": began - created,
        "in steps": in_steps,
        "between steps": at - began - in_steps,
    }


async def round_trip_s(info: dict[str, Any], sp: str, n: int = 30) -> float:
    """The median time of one Graph call (GET templates) as the worker sees it."""
    ctx = ssl.create_default_context(cafile=info["ca_path"])
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as session:
        client = NaiveClient(info, session)
        await client.login()
        path = f"/servicePrincipals/{sp}/synchronization/templates"
        await client.call("GET", path)  # the connection is open from here on
        times = []
        for _ in range(n):
            began = time.perf_counter()
            await client.call("GET", path)
            times.append(time.perf_counter() - began)
    return statistics.median(times)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=30)
    ap.add_argument("--latency-ms", type=int, default=100)
    args = ap.parse_args()
    faults = {"latency_ms": args.latency_ms, "activation_delay_ms": 100, "random_seed": 7}
    with Stack(principals=args.requests + 1, faults=faults, workers=1) as st:
        assert st.sandbox is not None
        sps = st.principal_ids()
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            results = [await started_after(st, session, sp) for sp in sps[: args.requests]]
            latencies = [total for total, _ in results]
        await st.wait_finished(args.requests, 60)
        stats = st.sandbox.stats()
        calls = {
            route: sum(by_status.values())
            for route, by_status in stats["calls"].items()
            if route != "token"
        }
        rtt = await round_trip_s(st.sandbox.info, sps[-1])
    per_app = {route: n / args.requests for route, n in sorted(calls.items())}
    before = sum(per_app.get(r, 0) for r in BEFORE_START)
    before += max(0.0, per_app.get("jobs.get", 0) - 1)  # the last get is verify's
    p50 = statistics.median(latencies)
    budget = before * rtt + 0.050
    rows = [
        {
            "requests": args.requests,
            "Graph calls/app": round(sum(per_app.values()), 2),
            "calls before start": before,
            "Graph round trip p50 ms": round(rtt * 1000, 1),
            "POST->started p50 ms": round(p50 * 1000, 1),
            "p90 ms": round(sorted(latencies)[int(0.9 * len(latencies))] * 1000, 1),
            "budget ms (round trips + 50)": round(budget * 1000, 1),
            "overhead p50 ms": round((p50 - before * rtt) * 1000, 1),
        }
    ]
    route_rows = [{"route": r, "calls/app": round(n, 2)} for r, n in per_app.items()]
    part_rows = [
        {"part": name, "p50 ms": round(statistics.median(p[name] for _, p in results) * 1000, 1)}
        for name in results[0][1]
    ]
    part_rows.append(
        {"part": "of which Graph round trips", "p50 ms": round(before * rtt * 1000, 1)}
    )
    body = f"""## (H) Latency and Graph calls per app (issues 14.2, 14.5)

`make bench-latency` - one worker, default workflow settings, the sandbox unthrottled with
{args.latency_ms} ms per Graph call; {args.requests} requests one after the other (nothing
queues). POST->started = from sending the POST to the `start_job` history entry (written when
Graph answered the start call); calls before start = every call but verify's last GET of
the job. Round trip = the median of 30 `GET .../templates` from the
benchmark over one kept-alive HTTPS connection (what a worker's call costs). Measured
{machine()}.

{table(rows)}
Target (14.5): POST->started p50 <= round trips + 50 ms: {
        "met" if p50 <= budget else "**MISSED**"
    }; (14.2) <= 5 Graph calls per app including verify: {
        "met" if sum(per_app.values()) <= 5 else "**MISSED**"
    }.

Where POST->started goes (p50 of each part; "pick-up" = from the record's `createdAt` to the
first step's beginning: arq's poll, the job's claim, the token from msal's cache; "in steps" =
the steps' own durations, Graph's round trips included):

{table(part_rows)}
{table(route_rows)}"""
    write_section("latency", body)
    print(body)


if __name__ == "__main__":
    asyncio.run(main())
