"""The floor under (D): the same Graph calls and Redis round trips per request as a worker
makes, from a bare loop of aiohttp and redis-py with nothing else (no arq, no workflow, no
models, no logs), so that the worker's CPU per request can be read against what its two
libraries alone cost on the same machine.

Run by :mod:`benchmarks.worker_cost` as a child process with the stack's environment (the
sandbox's Graph, the token from msal as the worker gets it, the same TLS session and event
loop, its connections opened before the measured part), the principal ids on stdin (a JSON
list)::

    python -m benchmarks.bare_worker N CONCURRENCY CALLS TRIPS BYTES

Each of N requests makes TRIPS Redis round trips (a script storing BYTES bytes, as a step's
save does), CALLS of them followed by a Graph GET whose JSON is parsed, CONCURRENCY requests at
a time. Prints the process CPU seconds spent on the N requests, as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import uvloop
from redis.asyncio import Redis

from service.core.settings import load_settings
from workers.graph.tls import close_quietly, new_session
from workers.graph.token import TokenProvider

SAVE = "redis.call('SET', KEYS[1], ARGV[1]) return 1"


async def main(n: int, concurrency: int, calls: int, trips: int, size: int) -> None:
    settings = load_settings()
    tokens = await TokenProvider.create(settings)
    session = new_session(settings)
    redis = Redis.from_url(settings.redis_url)
    save = redis.register_script(SAVE)
    payload = "x" * size
    principals: list[str] = json.loads(sys.stdin.read())
    gate = asyncio.Semaphore(concurrency)

    async def call(sp: str) -> None:
        headers = {"Authorization": f"Bearer {await tokens.token()}"}
        url = f"{settings.graph_url}/servicePrincipals/{sp}/synchronization/jobs"
        async with session.get(url, headers=headers) as resp:
            await resp.json()

    async def request(sp: str) -> None:
        async with gate:
            for i in range(trips):
                await save(keys=[f"bare:{sp}"], args=[payload])
                if i < calls:
                    await call(sp)

    # Not measured: one call per connection, so that the TLS handshakes of the pool are paid
    # before (a worker's pool is open for most of its drain): the figure is a floor.
    await asyncio.gather(*(call(principals[i % len(principals)]) for i in range(concurrency)))
    began, cpu = time.monotonic(), time.process_time()
    await asyncio.gather(*(request(principals[i % len(principals)]) for i in range(n)))
    print(json.dumps({"cpu_s": time.process_time() - cpu, "wall_s": time.monotonic() - began}))
    await close_quietly(session)
    await redis.aclose()


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:6]]
    uvloop.run(main(*args))
