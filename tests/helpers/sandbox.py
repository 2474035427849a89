"""Run the sandbox as a child process (`python -m sandbox`) and talk to its control plane.

HTTPS calls here trust only the sandbox CA (``info["ca_path"]``) and ignore proxy and CA
environment variables (REQUESTS_CA_BUNDLE is set on CI machines and would override ``verify=``).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import requests

from sandbox.certs import ensure_server_tls
from sandbox.cli import start_site
from sandbox.context import CTX_KEY, SandboxConfig, SandboxContext
from sandbox.faults import FaultProfile
from sandbox.seed import load_seed
from service.core.settings import Settings, load_settings
from tests.helpers import CONTROL_TIMEOUT_S, START_TIMEOUT_S

REPO_ROOT = Path(__file__).resolve().parents[2]


class SandboxError(RuntimeError):
    pass


class SandboxProcess:
    """A running ``python -m sandbox`` child process."""

    def __init__(self, proc: subprocess.Popen[bytes], info: dict[str, Any], state_dir: Path):
        self.proc = proc
        self.info = info
        self.state_dir = state_dir
        self.base_url: str = info["authority_host"]
        self._ssl = ssl.create_default_context(cafile=info["ca_path"])
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=self._ssl)
        )

    # -- facts ------------------------------------------------------------------------------
    @property
    def tenant_id(self) -> str:
        return str(self.info["tenant_id"])

    @property
    def authority(self) -> str:
        """The msal authority: authority_host + "/" + tenant_id."""
        return f"{self.base_url}/{self.tenant_id}"

    @property
    def graph_url(self) -> str:
        return str(self.info["graph_url"])

    @property
    def ca_path(self) -> str:
        return str(self.info["ca_path"])

    def env(self) -> dict[str, str]:
        """The PROVISIONER_* variables pointing at this sandbox (secret-credential app)."""
        return {
            "PROVISIONER_TENANT_ID": self.tenant_id,
            "PROVISIONER_CLIENT_ID": str(self.info["client_id"]),
            "PROVISIONER_CLIENT_SECRET": str(self.info["client_secret"]),
            "PROVISIONER_AUTHORITY_HOST": self.base_url,
            "PROVISIONER_GRAPH_URL": self.graph_url,
            "PROVISIONER_CA_BUNDLE": self.ca_path,
        }

    def cert_credential(self) -> dict[str, str]:
        """msal ``client_credential`` for the certificate app (``info["cert_client_id"]``)."""
        pem = Path(self.info["cert_path"]).read_text()
        return {"private_key": pem, "thumbprint": str(self.info["cert_thumbprint"])}

    def requests_session(self) -> requests.Session:
        """A requests Session trusting only the sandbox CA (pass it to msal as http_client)."""
        session = requests.Session()
        session.trust_env = False  # else REQUESTS_CA_BUNDLE silently replaces verify=
        session.verify = self.ca_path
        return session

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_path)

    # -- control plane ----------------------------------------------------------------------
    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(  # noqa: S310 - https to our own sandbox
            self.base_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with self._opener.open(req, timeout=CONTROL_TIMEOUT_S) as resp:
                text = resp.read().decode()
        except urllib.error.HTTPError as exc:
            raise SandboxError(f"{method} {path}: {exc.code} {exc.read().decode()}") from exc
        return json.loads(text) if text else None

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/_sandbox/stats")
        return result

    def faults(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/_sandbox/faults")
        return result

    def set_faults(self, profile: dict[str, Any]) -> None:
        self._call("PUT", "/_sandbox/faults", profile)

    def patch_faults(self, patch: dict[str, Any]) -> None:
        self._call("PATCH", "/_sandbox/faults", patch)

    def reset(self) -> None:
        self._call("POST", "/_sandbox/reset")

    def principals(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/_sandbox/principals")["value"]
        return result

    def add_principal(self, principal: dict[str, Any]) -> None:
        self._call("POST", "/_sandbox/principals", principal)

    # -- lifecycle --------------------------------------------------------------------------
    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout_s: float = 10) -> None:
        """SIGTERM, wait, SIGKILL fallback."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout_s)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def _write(path: Path, data: dict[str, Any] | Path) -> Path:
    if isinstance(data, Path):
        return data
    path.write_text(json.dumps(data))
    return path


def start_sandbox(
    state_dir: Path,
    *,
    seed: dict[str, Any] | Path | None = None,
    faults: dict[str, Any] | None = None,
    args: Sequence[str] = (),
    timeout_s: float = START_TIMEOUT_S,
) -> SandboxProcess:
    """Spawn ``python -m sandbox --port 0 --state-dir state_dir`` and wait until it listens."""
    state_dir = Path(state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    info_path = state_dir / "sandbox.json"
    info_path.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "sandbox", "--port", "0", "--state-dir", str(state_dir)]
    if seed is not None:
        argv += ["--seed", str(_write(state_dir / "seed.json", seed))]
    if faults is not None:
        argv += ["--faults", str(_write(state_dir / "faults.json", faults))]
    argv += list(args)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        argv, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _, err = proc.communicate()
            raise SandboxError(f"sandbox exited with {proc.returncode}: {err.decode()}")
        if info_path.exists():
            info = json.loads(info_path.read_text())
            if info.get("pid") == proc.pid:
                return SandboxProcess(proc, info, state_dir)
        time.sleep(0.05)
    proc.kill()
    _, err = proc.communicate()
    raise SandboxError(f"sandbox did not start within {timeout_s}s: {err.decode()}")


@contextlib.contextmanager
def running_sandbox(
    state_dir: Path,
    *,
    seed: dict[str, Any] | Path | None = None,
    faults: dict[str, Any] | None = None,
    args: Sequence[str] = (),
    timeout_s: float = START_TIMEOUT_S,
) -> Iterator[SandboxProcess]:
    sandbox = start_sandbox(state_dir, seed=seed, faults=faults, args=args, timeout_s=timeout_s)
    try:
        yield sandbox
    finally:
        sandbox.stop()


# -- in-process sandbox (same app, no child process) -------------------------------------------
class InProcessSandbox:
    """The sandbox app served over TLS in this event loop, with an aiohttp session trusting it."""

    def __init__(
        self, ctx: SandboxContext, base_url: str, ca_path: str, session: aiohttp.ClientSession
    ) -> None:
        self.ctx = ctx
        self.base_url = base_url
        self.graph_url = f"{base_url}/v1.0"
        self.ca_path = ca_path
        self.session = session
        self.tenant_id = ctx.state.tenant_id

    def sp_url(self, sp_id: str, suffix: str = "", version: str = "v1.0") -> str:
        return f"{self.base_url}/{version}/servicePrincipals/{sp_id}/synchronization{suffix}"

    async def token(self, client_id: str | None = None, secret: str | None = None) -> str:
        """An access token for ``client_id`` (default: the seed's first secret application)."""
        if client_id is None:
            app = next(a for a in self.ctx.config.seed.applications if a.clientSecret)
            client_id, secret = app.clientId, app.clientSecret
        elif secret is None:
            app = next(a for a in self.ctx.config.seed.applications if a.clientId == client_id)
            secret = app.clientSecret
        form = {
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret or "",
            "scope": "https://graph.microsoft.com/.default",
        }
        async with self.session.post(
            f"{self.base_url}/{self.tenant_id}/oauth2/v2.0/token", data=form
        ) as resp:
            body = await resp.json()
        if "access_token" not in body:
            raise SandboxError(f"token request failed: {body}")
        return str(body["access_token"])


@contextlib.asynccontextmanager
async def in_process_sandbox(
    state_dir: Path,
    *,
    seed: dict[str, Any] | Path | None = None,
    faults: dict[str, Any] | None = None,
    rng_seed: int | None = None,
    token_lifetime_s: int = 3600,
) -> AsyncIterator[InProcessSandbox]:
    """``async with in_process_sandbox(dir) as sb:`` -> InProcessSandbox (fresh state)."""
    tls = ensure_server_tls(Path(state_dir))
    config = SandboxConfig(
        seed=load_seed(seed),
        faults=FaultProfile.model_validate(faults or {}),
        state_dir=Path(state_dir),
        token_lifetime_s=token_lifetime_s,
        rng=random.Random(rng_seed) if rng_seed is not None else None,
    )
    runner, port = await start_site(config, "127.0.0.1", 0, tls)
    connector = aiohttp.TCPConnector(ssl=tls.client_ssl_context(), limit=20)
    try:
        async with aiohttp.ClientSession(connector=connector) as session:
            yield InProcessSandbox(
                runner.app[CTX_KEY], f"https://127.0.0.1:{port}", str(tls.ca_path), session
            )
    finally:
        await runner.cleanup()


class Clock:
    """A monotonic clock a test moves by hand (``clock.t += 5``), for the pure tenant state."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def graph_settings(sandbox: SandboxProcess) -> Settings:
    """The settings the sandbox's env gives (its Graph URL, tenant, client and CA)."""
    env = {k.removeprefix("PROVISIONER_").lower(): v for k, v in sandbox.env().items()}
    return load_settings(**env)


#: The Content-Type of Graph's JSON answers, as the sandbox sends it.
ODATA_JSON = (
    "application/json;odata.metadata=minimal;odata.streaming=true;"
    "IEEE754Compatible=false;charset=utf-8"
)


async def graph_call(
    sb: InProcessSandbox,
    method: str,
    url: str,
    *,
    token: str | None,
    json: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    """One call to the sandbox: status, headers and the JSON body (None when empty)."""
    hdrs = dict(headers or {})
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    async with sb.session.request(method, url, json=json, headers=hdrs) as resp:
        text = await resp.text()
        body = await resp.json(content_type=None) if text else None
        return resp.status, dict(resp.headers), body


def assert_graph_error(status: int, headers: dict[str, str], body: Any, code: str) -> None:
    """The answer is Graph's error body, with ``code`` and the ids echoed in ``innerError``."""
    assert headers["Content-Type"] == ODATA_JSON
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    inner = body["error"]["innerError"]
    assert set(inner) == {"date", "request-id", "client-request-id"}
    assert inner["request-id"] == headers["request-id"]
    assert inner["client-request-id"] == headers["client-request-id"]
