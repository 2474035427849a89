"""The physical baseline of intake: a bare aiohttp handler doing one Redis SET per POST.

python -m benchmarks.baseline_app --port P --redis redis://127.0.0.1:R/0
"""

from __future__ import annotations

import argparse
import uuid

from aiohttp import web
from redis.asyncio import Redis

REDIS: web.AppKey[Redis] = web.AppKey("redis", Redis)


async def create(request: web.Request) -> web.Response:
    body = await request.read()
    rid = uuid.uuid4().hex
    await request.app[REDIS].set(f"baseline:{rid}", body)
    return web.json_response({"id": rid}, status=202)


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--redis", required=True)
    args = ap.parse_args()
    app = web.Application()

    async def redis_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        app[REDIS] = Redis.from_url(args.redis)
        yield
        await app[REDIS].aclose()

    app.cleanup_ctx.append(redis_ctx)
    app.router.add_post("/v1/provisioning-requests", create)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
