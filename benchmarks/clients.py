"""The two comparison clients of the end-to-end benchmark, each run as its own process.

Both do what an admin script would: list templates (pick the default) -> list jobs (adopt one
with that template) -> create the job -> start it, for every principal, ``--concurrency`` at a
time, against the sandbox described by ``--info`` (its ``sandbox.json``).

- ``naive``: aiohttp; every call retried on its own with exponential backoff and full jitter
  (0.5 s doubling, capped at 30 s, up to 8 tries) on 429 and 5xx, Retry-After ignored, nothing
  shared between calls.
- ``sdk``: the Microsoft Graph Python SDK (msgraph-sdk) with its default middleware (its retry
  handler honours Retry-After, at most 3 retries).

Prints one JSON line: wall time, succeeded, failed and the first errors.

    python -m benchmarks.clients naive|sdk --info sandbox.json --principals ids.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

SCOPE = "https://graph.microsoft.com/.default"
GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)


class NaiveClient:
    def __init__(self, info: dict[str, Any], session: aiohttp.ClientSession) -> None:
        self.info = info
        self.session = session
        self.token = ""

    async def login(self) -> None:
        form = {
            "grant_type": "client_credentials",
            "client_id": self.info["client_id"],
            "client_secret": self.info["client_secret"],
            "scope": SCOPE,
        }
        url = f"{self.info['authority_host']}/{self.info['tenant_id']}/oauth2/v2.0/token"
        async with self.session.post(url, data=form) as resp:
            self.token = (await resp.json())["access_token"]

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        url = self.info["graph_url"] + path
        headers = {"Authorization": f"Bearer {self.token}"}
        for attempt in range(8):
            async with self.session.request(method, url, json=body, headers=headers) as resp:
                if resp.status < 300:
                    return await resp.json() if resp.status != 204 else None
                if resp.status not in (429, 500, 502, 503, 504):
                    raise RuntimeError(f"{method} {path}: {resp.status} {await resp.text()}")
            await asyncio.sleep(random.uniform(0, min(30.0, 0.5 * 2**attempt)))
        raise RuntimeError(f"{method} {path}: gave up after 8 tries")

    async def provision(self, sp: str) -> None:
        base = f"/servicePrincipals/{sp}/synchronization"
        templates = (await self.call("GET", f"{base}/templates"))["value"]
        template = next((t for t in templates if t.get("default")), templates[0])
        jobs = (await self.call("GET", f"{base}/jobs"))["value"]
        job = next((j for j in jobs if j.get("templateId") == template["id"]), None)
        if job is None:
            job = await self.call("POST", f"{base}/jobs", {"templateId": template["id"]})
        await self.call("POST", f"{base}/jobs/{job['id']}/start")


async def run_naive(info: dict[str, Any], principals: list[str], concurrency: int) -> list[Any]:
    ctx = ssl.create_default_context(cafile=info["ca_path"])
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(ssl=ctx, limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        client = NaiveClient(info, session)
        await client.login()
        return await bounded(client.provision, principals, concurrency)


async def run_sdk(info: dict[str, Any], principals: list[str], concurrency: int) -> list[Any]:
    os.environ["SSL_CERT_FILE"] = info["ca_path"]  # httpx (under the SDK) trusts this
    from azure.identity.aio import ClientSecretCredential
    from msgraph import GraphServiceClient
    from msgraph.generated.models.synchronization_job import SynchronizationJob

    credential = ClientSecretCredential(
        info["tenant_id"],
        info["client_id"],
        info["client_secret"],
        authority=info["authority_host"],
        disable_instance_discovery=True,
        connection_verify=info["ca_path"],  # azure-core's aiohttp transport ignores SSL_CERT_FILE
    )
    client = GraphServiceClient(credential, scopes=[SCOPE])
    client.request_adapter.base_url = info["graph_url"]

    async def provision(sp: str) -> None:
        sync = client.service_principals.by_service_principal_id(sp).synchronization
        templates = (await sync.templates.get()).value or []  # type: ignore[union-attr]
        template = next((t for t in templates if getattr(t, "default", False)), templates[0])
        jobs = (await sync.jobs.get()).value or []  # type: ignore[union-attr]
        job = next((j for j in jobs if j.template_id == template.id), None)
        if job is None:
            job = await sync.jobs.post(SynchronizationJob(template_id=template.id))
        await sync.jobs.by_synchronization_job_id(job.id).start.post()  # type: ignore[union-attr,arg-type]

    try:
        return await bounded(provision, principals, concurrency)
    finally:
        await credential.close()


async def bounded(
    fn: Callable[[str], Awaitable[None]], items: list[str], concurrency: int
) -> list[Any]:
    sem = asyncio.Semaphore(concurrency)

    async def one(item: str) -> Any:
        async with sem:
            try:
                await fn(item)
            except Exception as e:  # one line per kind of error: ids made alike
                return GUID.sub("{id}", f"{type(e).__name__}: {str(e)[:160]}")
            return None

    return await asyncio.gather(*(one(i) for i in items))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["naive", "sdk"])
    ap.add_argument("--info", required=True)
    ap.add_argument("--principals", required=True)
    ap.add_argument("--concurrency", type=int, default=100)
    args = ap.parse_args()
    info = json.loads(Path(args.info).read_text())
    principals = json.loads(Path(args.principals).read_text())
    runner = run_naive if args.kind == "naive" else run_sdk
    began = time.monotonic()
    results = asyncio.run(runner(info, principals, args.concurrency))
    wall = time.monotonic() - began
    errors = [r for r in results if r]
    print(
        json.dumps(
            {
                "wall_s": wall,
                "succeeded": len(results) - len(errors),
                "failed": len(errors),
                "errors": sorted(set(errors))[:5],
            }
        )
    )


if __name__ == "__main__":
    main()
