"""Profile the hot paths once with pyinstrument: the intake API under wrk, then one worker.

Writes ``benchmarks/profiles/api-profile.txt`` and (through ``benchmarks.worker_cost --profile``)
``benchmarks/profiles/worker-profile.txt``.

    python -m benchmarks.profile [--seconds 10] [--requests 1000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.intake import LUA, wrk
from benchmarks.report import PROFILES, REPO, state_dir
from benchmarks.stack import API_KEY
from service.core.config_values import hash_api_key
from tests.helpers.processes import Child, wait_http
from tests.helpers.redis_server import RedisServer, free_port


def profile_api(seconds: int) -> Path:
    PROFILES.mkdir(parents=True, exist_ok=True)
    out = PROFILES / "api-profile.txt"
    with tempfile.TemporaryDirectory(prefix="bench-prof-", dir=state_dir()) as tmp:
        workdir = Path(tmp)
        redis = RedisServer(workdir / "redis", config_file=REPO / "deploy" / "redis.conf")
        redis.start()
        env = {
            "PROVISIONER_REDIS_URL": redis.url,
            "PROVISIONER_API_KEYS": f"bench:{hash_api_key(API_KEY)}",
            "PROVISIONER_LOG_LEVEL": "WARNING",
            "PROVISIONER_LOG_FORMAT": "json",
        }
        port = free_port()
        argv = [sys.executable, "-m", "pyinstrument", "-r", "text", "-o", str(out)]
        argv += ["-m", "service.cli.main", "api", "--host", "127.0.0.1", "--port", str(port)]
        api = Child("api-profiled", argv, env, workdir)
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz", api)
            script = workdir / "post.lua"
            script.write_text(LUA.replace("%s", API_KEY))
            result = wrk(f"http://127.0.0.1:{port}/v1/provisioning-requests", script, seconds, 32)
            print("api under pyinstrument:", result)
        finally:
            api.stop(timeout_s=60)
            redis.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--requests", type=int, default=1000)
    args = ap.parse_args()
    n = args.requests
    out = profile_api(args.seconds)
    print(out.read_text()[:5000])
    subprocess.run(
        [sys.executable, "-m", "benchmarks.worker_cost", "--profile", "--requests", str(n)],
        check=True,
        cwd=REPO,
    )


if __name__ == "__main__":
    main()
