"""The step view of a request on the terminal: one line a step with its mark, redrawn in place
until the request ends (appended instead when the output is not a terminal)."""

from __future__ import annotations

import itertools
import time
from typing import Any, TextIO

from service.cli.client import Client
from service.core.actions import steps_for
from service.core.models import State

TERMINAL = {State.SUCCEEDED.value, State.FAILED.value, State.CANCELLED.value}
_SPINNER = "|/-\\"
_MARKS = {"succeeded": "ok", "adopted": "ok", "skipped": "--", "failed": "!!", "retrying": ".."}


def render(record: dict[str, Any], spin: str = " ") -> list[str]:
    """The record as a step view: one line per step with its outcome, time and Graph ids."""
    state = record["state"]
    lines = [
        f"{record['id']}  {record.get('action') or 'provision'}  {state}"
        f"{'' if state in TERMINAL else ' ' + spin}",
        f"  principal {record['servicePrincipalId']}  template {record.get('templateId') or '-'}"
        f"  job {record.get('jobId') or '-'}",
    ]
    latest: dict[str, dict[str, Any]] = {}
    for entry in record.get("history", []):
        if entry.get("step"):
            latest[entry["step"]] = entry
    for step in steps_for(record.get("action") or "provision"):
        entry = latest.get(step.value)
        if entry is None:
            mark = spin if record.get("step") == step.value and state == "running" else " "
            lines.append(f"  [{mark:>2}] {step.value}")
            continue
        took = f" {entry['durationMs']} ms" if entry.get("durationMs") is not None else ""
        graph = ""
        if entry.get("graphStatus"):
            graph = f" graph {entry['graphStatus']} {entry.get('graphRequestId') or ''}".rstrip()
        lines.append(
            f"  [{_MARKS.get(entry['outcome'], entry['outcome'][:2])}] {step.value}{took}{graph}"
            + (f"  {entry['message']}" if entry.get("message") else "")
        )
    if record.get("error"):
        err = record["error"]
        lines.append(f"  error {err['code']}: {err['message']}")
        if err.get("graphRequestId"):
            lines.append(
                f"  graph request-id {err['graphRequestId']} (status {err.get('graphStatus')})"
            )
    return lines


def watch(client: Client, request_id: str, out: TextIO, interval_s: float = 0.5) -> dict[str, Any]:
    """Redraw the step view until the request ends (in place on a terminal)."""
    drawn = 0
    tty = out.isatty()
    last: list[str] = []
    for spin in itertools.cycle(_SPINNER):
        _, record = client.call("GET", f"/v1/provisioning-requests/{request_id}")
        lines = render(record, spin)
        if tty:
            out.write(f"\x1b[{drawn}F\x1b[J" if drawn else "")
            out.write("\n".join(lines) + "\n")
            drawn = len(lines)
        elif [line.rstrip(_SPINNER + " ") for line in lines] != last:
            out.write("\n".join(lines) + "\n\n")
            last = [line.rstrip(_SPINNER + " ") for line in lines]
        out.flush()
        if record["state"] in TERMINAL:
            return dict(record)
        time.sleep(interval_s)
    raise AssertionError("unreachable")
