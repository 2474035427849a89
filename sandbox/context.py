"""What a running sandbox app holds (one per process/port), and how handlers reach it."""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from sandbox.certs import (
    ClientCertificate,
    client_cert_path,
    ensure_client_certificate,
    ensure_signing_key,
    load_certificate,
)
from sandbox.entra import Application, TokenService
from sandbox.faults import FaultEngine, FaultProfile
from sandbox.seed import Seed
from sandbox.state import TenantState


@dataclass
class SandboxConfig:
    seed: Seed
    faults: FaultProfile
    state_dir: Path
    token_lifetime_s: int = 3600
    rng: random.Random | None = None
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time


@dataclass
class SandboxContext:
    config: SandboxConfig
    state: TenantState
    engine: FaultEngine
    tokens: TokenService
    client_certs: dict[str, ClientCertificate]
    paging_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    def reset(self) -> None:
        """Seed state, empty stats, the start-up fault profile."""
        self.state.reset()
        self.engine.profile = self.config.faults
        self.engine.reset()


CTX_KEY = web.AppKey("sandbox_context", SandboxContext)


def build_context(config: SandboxConfig) -> SandboxContext:
    state_dir = config.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    certs: dict[str, ClientCertificate] = {}
    apps: dict[str, Application] = {}
    first_generated = True
    for app in config.seed.applications:
        cert = None
        if app.certificate == "generated":
            path = client_cert_path(state_dir, app.clientId, first=first_generated)
            first_generated = False
            certs[app.clientId.lower()] = ensure_client_certificate(path, app.clientId)
            cert = certs[app.clientId.lower()].certificate
        elif app.certificate is not None:
            cert = load_certificate(Path(app.certificate))
        apps[app.clientId.lower()] = Application(
            client_id=app.clientId.lower(),
            display_name=app.displayName or app.clientId,
            secret=app.clientSecret,
            certificate=cert,
            roles=tuple(app.roles),
        )
    tokens = TokenService(
        tenant_id=config.seed.tenantId.lower(),
        applications=apps,
        signing_key=ensure_signing_key(state_dir),
        lifetime_s=config.token_lifetime_s,
        wall_clock=config.wall_clock,
    )
    engine = FaultEngine(
        config.faults, rng=config.rng, clock=config.clock, wall_clock=config.wall_clock
    )
    tokens.roles_override = lambda: engine.profile.token_roles
    state = TenantState(config.seed, clock=config.clock)
    return SandboxContext(
        config=config, state=state, engine=engine, tokens=tokens, client_certs=certs
    )
