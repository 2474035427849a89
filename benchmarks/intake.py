"""(B) Intake throughput and latency vs the physical baseline (issue 7.1).

For each Redis durability mode (deploy/redis.conf as shipped: AOF ``appendfsync always``; then
the same file with ``everysec``), on the same machine and in the same run:

1. saturation: ``wrk`` (a separate process, closed loop, 1 thread, ``--connections``
   connections, ``--seconds``) POSTs one request per distinct service principal to
   (a) the bare baseline (``benchmarks.baseline_app``: aiohttp + one Redis SET) and
   (b) ``provisioner api`` (auth, validation, dedupe, record + indexes + arq job in one Lua
   script), with each server's CPU milliseconds per request;
2. latency at half of the API's saturation rate: ``benchmarks.loadgen`` (open loop, a separate
   process) at that fixed rate, against both.

Targets: API throughput >= 50% of the baseline's with appendfsync always; p99 < 25 ms at half
the saturation rate.

    python -m benchmarks.intake [--seconds 10] [--connections 32]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import psutil

from benchmarks.redis_side import busy_disk, forks_of, redis_cpu_s
from benchmarks.report import REPO, machine, plot_path, pyplot, state_dir, table, write_section
from benchmarks.stack import API_KEY
from service.core.config_values import hash_api_key
from tests.helpers.processes import Child, start_api, wait_http
from tests.helpers.redis_server import RedisServer, free_port

LUA = """
math.randomseed(os.time())
local function guid()
  return string.format("%08x-%04x-4%03x-a%03x-%012x", math.random(0, 0x7fffffff),
    math.random(0, 0xffff), math.random(0, 0xfff), math.random(0, 0xfff),
    math.random(0, 0x7fffffff) * 0x10000 + math.random(0, 0xffff))
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
request = function()
  return wrk.format(nil, nil, nil, '{"servicePrincipalId":"' .. guid() .. '"}')
end
"""


def wrk(url: str, script: Path, seconds: int, connections: int) -> dict[str, float]:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script)]
    out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        if not m:
            return float("nan")
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {
        "rps": rps,
        "p50_ms": pct("50"),
        "p99_ms": pct("99"),
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(0) if errors else "",
    }  # type: ignore[dict-item]


def loadgen(url: str, rate: float, seconds: int) -> dict[str, Any]:
    argv = [sys.executable, "-m", "benchmarks.loadgen", "--url", url, "--key", API_KEY]
    argv += ["--rate", str(rate), "--seconds", str(seconds)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=REPO).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def cpu_s(child: Child) -> float:
    """CPU seconds (user + system) a server process has used so far."""
    times = psutil.Process(child.proc.pid).cpu_times()
    return float(times.user + times.system)


def saturate(
    child: Child, redis: RedisServer, url: str, script: Path, seconds: int, conns: int
) -> dict[str, Any]:
    """``wrk`` at saturation, plus the server's and Redis's CPU ms per request answered."""
    before, redis_before = cpu_s(child), redis_cpu_s(redis)
    result: dict[str, Any] = wrk(url, script, seconds, conns)
    n = result["rps"] * seconds
    result["cpu_ms"] = round((cpu_s(child) - before) * 1000 / n, 3)
    result["redis_cpu_ms"] = round((redis_cpu_s(redis) - redis_before) * 1000 / n, 3)
    return result


def start_baseline(redis_url: str, log_dir: Path) -> tuple[Child, str]:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "benchmarks.baseline_app",
        "--port",
        str(port),
        "--redis",
        redis_url,
    ]
    child = Child("baseline", argv, {}, log_dir)
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/healthz", child)
    return child, base


def measure(mode: str, seconds: int, connections: int, workdir: Path) -> list[dict[str, Any]]:
    redis = RedisServer(
        workdir / f"redis-{mode}",
        config_file=REPO / "deploy" / "redis.conf",
        extra_args=("--appendfsync", mode),
    )
    redis.start()
    env = {
        "PROVISIONER_REDIS_URL": redis.url,
        "PROVISIONER_API_KEYS": f"bench:{hash_api_key(API_KEY)}",
        "PROVISIONER_LOG_LEVEL": "WARNING",
        "PROVISIONER_LOG_FORMAT": "json",
        "PROVISIONER_QUEUE_NAME": f"intake-{mode}",
    }
    script = workdir / "post.lua"
    script.write_text(LUA.replace("%s", API_KEY))
    rows: list[dict[str, Any]] = []
    api, api_base = start_api(env, workdir, name=f"api-{mode}")
    baseline, base_base = start_baseline(redis.url, workdir)
    try:
        path = "/v1/provisioning-requests"
        # a short warm-up of each, then the measured saturation runs
        wrk(base_base + path, script, 2, connections)
        wrk(api_base + path, script, 2, connections)
        sat_base = saturate(baseline, redis, base_base + path, script, seconds, connections)
        sat_api = saturate(api, redis, api_base + path, script, seconds, connections)
        half = round(sat_api["rps"] / 2)
        forks = forks_of(redis)
        lat_api = loadgen(api_base + path, half, seconds)
        lat_api["aof_rewrites"] = forks_of(redis) - forks
        forks = forks_of(redis)
        lat_base = loadgen(base_base + path, half, seconds)
        lat_base["aof_rewrites"] = forks_of(redis) - forks
        forks = forks_of(redis)
        with busy_disk(workdir / f"busy-{mode}", seconds + 2):
            lat_busy = loadgen(api_base + path, half, seconds)
        lat_busy["aof_rewrites"] = forks_of(redis) - forks
        for name, sat, lat in (
            ("baseline (aiohttp + SET)", sat_base, lat_base),
            ("provisioner api", sat_api, lat_api),
            ("provisioner api, busy disk", sat_api, lat_busy),
        ):
            rows.append(
                {
                    "appendfsync": mode,
                    "server": name,
                    "saturation_rps": round(sat["rps"]),
                    "sat_p50_ms": sat["p50_ms"],
                    "sat_p99_ms": sat["p99_ms"],
                    "cpu_ms_per_req": sat["cpu_ms"],
                    "redis_cpu_ms": sat["redis_cpu_ms"],
                    "non_2xx": sat["non2xx"],
                    "open_loop_rate": half,
                    "achieved_rps": lat["achieved_rate"],
                    "p50_ms": lat["p50_ms"],
                    "p99_ms": lat["p99_ms"],
                    "max_ms": lat["max_ms"],
                    "aof_rewrites": lat["aof_rewrites"],
                }
            )
            print(rows[-1], flush=True)
    finally:
        api.stop()
        baseline.stop()
        redis.stop()
    return rows


def plot(rows: list[dict[str, Any]]) -> str:
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    labels = [
        f"{r['server'].split(' ')[0]}{' busy' * ('busy' in r['server'])}\n{r['appendfsync']}"
        for r in rows
    ]
    colours = ["#888" if r["server"].startswith("baseline") else "#36c" for r in rows]
    ax1.bar(labels, [r["saturation_rps"] for r in rows], color=colours)
    ax1.set(ylabel="requests/s (wrk, saturation)", title="Intake throughput")
    x = range(len(rows))
    ax2.bar([i - 0.2 for i in x], [r["p50_ms"] for r in rows], width=0.4, label="p50")
    ax2.bar([i + 0.2 for i in x], [r["p99_ms"] for r in rows], width=0.4, label="p99")
    ax2.axhline(25, color="red", linestyle="--", linewidth=1, label="p99 target 25 ms")
    ax2.set_xticks(list(x), labels)
    ax2.set(ylabel="ms", title="Latency at half the API's saturation rate (open loop)")
    ax2.legend()
    fig.tight_layout()
    path = plot_path("intake")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path.name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-intake-", dir=state_dir()) as tmp:
        for mode in ("always", "everysec"):
            rows += measure(mode, args.seconds, args.connections, Path(tmp))
    png = plot(rows)
    ratios: list[str] = []
    cpu: list[str] = []
    verdicts = []
    for mode in ("always", "everysec"):
        base, api, busy = (r for r in rows if r["appendfsync"] == mode)
        ratio = api["saturation_rps"] / base["saturation_rps"]
        ratios.append(f"{mode}: {ratio:.0%}")
        cpu.append(f"{mode}: {api['cpu_ms_per_req'] / base['cpu_ms_per_req']:.1f}x")
        if mode == "always":
            verdicts.append(
                f"throughput >= 50% of baseline with appendfsync always: "
                f"**{'met' if ratio >= 0.5 else 'MISSED'}** ({ratio:.0%})"
            )
            verdicts.append(
                f"p99 < 25 ms at half saturation ({api['open_loop_rate']} req/s): "
                f"**{'met' if api['p99_ms'] < 25 else 'MISSED'}** ({api['p99_ms']} ms); "
                f"with a busy disk: {busy['p99_ms']} ms"
            )
    body = f"""## (B) Intake throughput and latency (issue 7.1)

`make bench-intake` - one `provisioner api` process vs the physical baseline (one bare aiohttp
handler doing one Redis `SET`, `benchmarks/baseline_app.py`), both on the same Redis started from
`deploy/redis.conf` (AOF) with `appendfsync always` (as shipped), then `everysec`. Saturation:
`wrk -t1 -c{args.connections} -d{args.seconds}s`, each request for a new service principal GUID
(no dedupe hits, no `Idempotency-Key`); no workers run, so the queue only grows;
`cpu_ms_per_req` = the server process's CPU time (user + system) over the saturation run / the
requests it answered, `redis_cpu_ms` the same for Redis. Latency: an open-loop generator
(`benchmarks/loadgen.py`, its own process, latency counted from each request's scheduled time)
at half of the API's saturation rate for {args.seconds} s, against both servers. The load
generators share the 2 cores with the server and Redis. `aof_rewrites` = AOF rewrites Redis
started during that latency run (`deploy/redis.conf`: `auto-aof-rewrite-min-size 64mb`; the
saturation runs before it fill the AOF; with `no-appendfsync-on-rewrite no` fsyncs go on during
the rewrite). "busy disk": the same open-loop run with another writer on Redis's disk beside
it (`dd` writing 64 MiB with `conv=fsync`, over and over; one file, deleted after). Measured
{machine()}.

{table(rows)}
API throughput as a share of the baseline's: {", ".join(ratios)}; API CPU per request as a
multiple of the baseline's: {", ".join(cpu)}.

- {verdicts[0]}
- {verdicts[1]}

![intake](benchmarks/{png})
"""
    write_section("intake", body)
    print(body)


if __name__ == "__main__":
    main()
