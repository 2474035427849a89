"""``provisioner up`` (what ``make run`` runs) followed by the curl it prints ends ``succeeded``."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers.processes import REPO_ROOT
from tests.helpers.redis_server import free_port

pytestmark = pytest.mark.e2e


def _read_lines(proc: subprocess.Popen[str], lines: list[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)


def test_up_then_the_printed_curl_succeeds(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVISIONER_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli.main", "up", "--port", str(port),
         "--state-dir", str(tmp_path / "state")],
        cwd=tmp_path,  # no .env here
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )  # fmt: skip
    lines: list[str] = []
    threading.Thread(target=_read_lines, args=(proc, lines), daemon=True).start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any("-d '" in line for line in lines):
            assert proc.poll() is None, "".join(lines)
            time.sleep(0.1)
        text = "".join(lines)
        start = text.index("curl -sS")
        end = text.index("'\n", text.index("-d '", start)) + 1
        command = text[start:end].replace("\\\n", " ")
        assert " -i " in command  # the 202 and its Location are shown
        out = subprocess.run(
            shlex.split(command), capture_output=True, text=True, check=True
        ).stdout
        assert " 202 " in out.splitlines()[0], out
        location = re.search(r"(?im)^location: (\S+)", out)
        assert location, out
        key = re.search(r"Bearer (\S+?)'", command)
        assert key
        url = f"http://127.0.0.1:{port}{location.group(1)}"
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key.group(1)}"})
        record: dict[str, object] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310 - loopback
                record = json.loads(resp.read())
            if record["state"] in {"succeeded", "failed"}:
                break
            time.sleep(0.3)
        assert record["state"] == "succeeded", record
        assert record["jobId"]
        # The printed client command runs as printed (the venv's script, not a bare name).
        exports = re.search(r"export (PROVISIONER_API_URL=\S+) (PROVISIONER_API_KEY=\S+)", text)
        submit = re.search(r"^  (\S+) submit (.+)$", text, re.M)
        assert exports, text
        assert submit, text
        client_env = {**env, **dict(kv.split("=", 1) for kv in exports.groups())}
        client = subprocess.run(
            [submit.group(1), "submit", *shlex.split(submit.group(2))],
            cwd=tmp_path, env=client_env, capture_output=True, text=True, timeout=90, check=False,
        )  # fmt: skip
        assert client.returncode == 0, client.stdout + client.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    # Ctrl-C stopped every child: nothing is left in the process group (up waited for each;
    # the poll only lets the kernel finish reaping, bounded against a hang).
    deadline = time.monotonic() + 10
    while True:
        leftover = subprocess.run(
            ["pgrep", "-g", str(proc.pid)], capture_output=True, text=True, check=False
        ).stdout.split()
        if not leftover or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert leftover == [], leftover
