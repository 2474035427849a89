"""Quick probe: one find run, print the timeline."""

import asyncio, sys, time
import redis as redis_sync
from benchmarks.throttle import faults, env, row
from benchmarks.stack import Stack
from benchmarks.timeline import sampling
from service.core.keys import Keys


async def main():
    rate, w, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    header = len(sys.argv) < 5
    with Stack(
        principals=n,
        faults=faults(rate, header),
        workers=w,
        env={
            **env(w),
            "PROVISIONER_LOG_LEVEL": "INFO",
            **__import__("json").loads(__import__("os").environ.get("PENV", "{}")),
        },
        workdir=__import__("pathlib").Path("/tmp/probe-run"),
    ) as st:
        c = redis_sync.Redis.from_url(st.redis.url, decode_responses=True)
        key = Keys("provisioner:queue").tenant_bucket(st.sandbox.tenant_id)
        dump = []

        async def spy():
            t0 = time.monotonic()
            while True:
                h = c.hgetall(key)
                dump.append((time.monotonic() - t0, h))
                await asyncio.sleep(0.5)

        task = asyncio.create_task(spy())
        async with sampling(st) as tl:
            o = await st.run(timeout_s=600)
        task.cancel()
    print(row("probe", rate, o))
    for i, s in enumerate(tl.samples):
        if i % 2 == 0:
            print(
                f"{s.t:6.2f} rate={s.rate:7.1f} adm={tl.admitted_rate(i, 1.0):6.1f} calls={s.calls} 429={s.throttled}"
            )
    for t, h in dump[:40]:
        print(
            f"{t:5.1f}",
            {
                k: (
                    round(float(v), 1)
                    if k not in ("tev", "tp", "tcut", "mts", "mps", "ts")
                    else int(float(v)) % 100000
                )
                for k, v in sorted(h.items())
            },
        )


asyncio.run(main())
