"""The service's own processes (``provisioner api`` / ``provisioner worker``) as test children.

Output goes to log files, never to pipes nobody reads (a full pipe would block the child).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from tests.helpers import START_TIMEOUT_S
from tests.helpers.redis_server import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


class Child:
    """One child process with its log file."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log_dir: Path) -> None:
        self.name = name
        self.metrics_port = 0
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("ab")
        full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        full_env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])
        )
        self.proc = subprocess.Popen(
            argv, env=full_env, cwd=REPO_ROOT, stdout=self._log, stderr=subprocess.STDOUT
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            os.kill(self.proc.pid, signum)

    def stop(self, timeout_s: float = 20, *, signalled: bool = False) -> int:
        """SIGTERM (unless the caller already sent it), then wait; SIGKILL after ``timeout_s``."""
        if self.alive():
            if not signalled:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return int(self.proc.returncode)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "service.cli.main", *args]


def wait_http(url: str, child: Child, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited: {child.log()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - loopback
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{child.name} not ready at {url}: {child.log()[-3000:]}")


def start_api(env: Mapping[str, str], log_dir: Path, name: str = "api") -> tuple[Child, str]:
    port = free_port()
    child = Child(name, cli("api", "--host", "127.0.0.1", "--port", str(port)), env, log_dir)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/healthz", child)
    except RuntimeError:
        child.stop()
        raise
    return child, base


def start_worker(env: Mapping[str, str], log_dir: Path, name: str = "worker") -> Child:
    """A ``provisioner worker``; its metrics listen on a free port (``child.metrics_port``)."""
    env = {"PROVISIONER_WORKER_METRICS_PORT": str(free_port()), **env}
    child = Child(name, cli("worker"), env, log_dir)
    child.metrics_port = int(env["PROVISIONER_WORKER_METRICS_PORT"])
    return child
