"""`provisioner sandbox`: run the Entra ID + Graph synchronization stand-in over HTTPS."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from sandbox.app import create_app
from sandbox.certs import ServerTLS, ensure_server_tls, write_atomic
from sandbox.context import CTX_KEY, SandboxConfig, SandboxContext
from sandbox.entra import WRITE_ROLES
from sandbox.faults import ALL_ROUTE, FaultProfile, load_profile
from sandbox.seed import load_seed


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="provisioner sandbox",
        description="Local HTTPS stand-in for Entra ID (token service) and the Microsoft Graph "
        "synchronization API, with fault injection. See docs/sandbox.md.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    p.add_argument("--state-dir", type=Path, default=Path(".state/sandbox"))
    p.add_argument("--seed", type=Path, help="JSON/YAML seed (default: packaged default)")
    p.add_argument("--faults", type=Path, help="JSON/YAML fault profile")
    p.add_argument("--token-lifetime-s", type=int, default=3600)
    f = p.add_argument_group("fault shortcuts (override the profile file)")
    f.add_argument("--latency-ms", type=float)
    f.add_argument("--latency-spread-ms", type=float)
    f.add_argument("--rate-limit", type=int, help="Graph calls per window per tenant")
    f.add_argument("--rate-window-s", type=float)
    f.add_argument(
        "--retry-after-style", choices=["integer", "decimal", "http-date", "absent", "mixed"]
    )
    f.add_argument("--error-rate", type=float, help="random 500/502/503/504, all Graph routes")
    f.add_argument("--throttle-rate", type=float, help="random 429, all Graph routes")
    f.add_argument("--lost-create-rate", type=float)
    f.add_argument("--replication-lag-ms", type=float)
    f.add_argument("--start-conflicts", type=int)
    f.add_argument("--page-size", type=int)
    f.add_argument("--activation-delay-ms", type=float)
    f.add_argument("--random-seed", type=int)
    return p


SHORTCUTS = (
    "latency_ms",
    "latency_spread_ms",
    "rate_limit",
    "rate_window_s",
    "retry_after_style",
    "lost_create_rate",
    "replication_lag_ms",
    "start_conflicts",
    "page_size",
    "activation_delay_ms",
    "random_seed",
)


def profile_from_args(args: argparse.Namespace) -> FaultProfile:
    profile = load_profile(args.faults) if args.faults else FaultProfile()
    patch: dict[str, Any] = {k: getattr(args, k) for k in SHORTCUTS if getattr(args, k) is not None}
    rates: dict[int, float] = {}
    if args.error_rate is not None:
        rates.update(dict.fromkeys((500, 502, 503, 504), args.error_rate / 4))
    if args.throttle_rate is not None:
        rates[429] = args.throttle_rate
    if rates:
        patch["errors"] = {ALL_ROUTE: rates}
    return profile.merged(patch)


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def describe(ctx: SandboxContext, host: str, port: int, tls: ServerTLS) -> dict[str, Any]:
    """The facts written to sandbox.json and printed at start-up."""
    base = f"https://{_url_host(host)}:{port}"
    seed = ctx.config.seed
    secret_app = next(
        (a for a in seed.applications if a.clientSecret and WRITE_ROLES & set(a.roles)), None
    )
    cert_id, cert = next(iter(ctx.client_certs.items()), (None, None))
    return {
        "authority_host": base,
        "tenant_id": ctx.state.tenant_id,
        "graph_url": f"{base}/v1.0",
        "ca_path": str(tls.ca_path),
        "client_id": secret_app.clientId if secret_app else None,
        "client_secret": secret_app.clientSecret if secret_app else None,
        "cert_client_id": cert_id,
        "cert_path": str(cert.path) if cert else None,
        "cert_thumbprint": cert.sha1_thumbprint if cert else None,
        "port": port,
        "pid": os.getpid(),
    }


async def start_site(
    config: SandboxConfig, host: str, port: int, tls: ServerTLS
) -> tuple[web.AppRunner, int]:
    """Start the app on host:port over TLS; returns the runner and the bound port."""
    runner = web.AppRunner(create_app(config), access_log=None, shutdown_timeout=2)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=tls.ssl_context())
    await site.start()
    bound = runner.addresses[0][1]
    return runner, int(bound)


async def _serve(args: argparse.Namespace, config: SandboxConfig) -> None:
    tls = ensure_server_tls(config.state_dir)
    runner, port = await start_site(config, args.host, args.port, tls)
    info = describe(runner.app[CTX_KEY], args.host, port, tls)
    write_atomic(config.state_dir / "sandbox.json", json.dumps(info, indent=2).encode())
    for key, value in info.items():
        print(f"{key}: {value}")
    print(f"authority: {info['authority_host']}/{info['tenant_id']}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        (config.state_dir / "sandbox.json").unlink(missing_ok=True)
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = SandboxConfig(
            seed=load_seed(args.seed),
            faults=profile_from_args(args),
            state_dir=args.state_dir.resolve(),
            token_lifetime_s=args.token_lifetime_s,
        )
    except (OSError, ValueError) as exc:
        print(f"provisioner sandbox: {exc}", file=sys.stderr)
        return 2
    asyncio.run(_serve(args, config))
    return 0
