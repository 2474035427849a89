"""The step view: one line a step of the record's action, its mark, time and Graph ids."""

from __future__ import annotations

from typing import Any

from service.cli.render import render

SP = "15331f0e-bdc6-41e2-afa0-a4c9abfe90b3"


def _entry(step: str, outcome: str, **fields: Any) -> dict[str, Any]:
    """A history entry as the API returns it (every field present, unset ones null)."""
    blank = dict.fromkeys(("durationMs", "graphStatus", "graphRequestId", "message"))
    return {**blank, "step": step, "outcome": outcome, **fields}


def _record(**fields: Any) -> dict[str, Any]:
    return {"id": "r1", "state": "running", "servicePrincipalId": SP, "history": [], **fields}


def test_a_running_request_spins_on_its_current_step_only() -> None:
    lines = render(
        _record(
            step="create_job",
            templateId="salesforce",
            history=[
                _entry("resolve_template", "succeeded", durationMs=12),
                _entry("instantiate_app", "skipped"),
            ],
        ),
        spin="/",
    )
    assert lines[0] == "r1  provision  running /"
    assert lines[1] == f"  principal {SP}  template salesforce  job -"
    assert "  [ok] resolve_template 12 ms" in lines
    assert "  [--] instantiate_app" in lines
    assert "  [ /] create_job" in lines
    assert "  [  ] start_job" in lines


def test_the_latest_entry_of_a_step_wins_and_carries_graph_ids_and_message() -> None:
    history = [
        _entry("start_job", "retrying", graphStatus=429, message="throttled"),
        _entry("start_job", "succeeded", graphStatus=204, graphRequestId="g1"),
    ]
    lines = render(_record(state="succeeded", history=history))
    assert lines[0] == "r1  provision  succeeded"
    assert "  [ok] start_job graph 204 g1" in lines
    assert not any("throttled" in line for line in lines)


def test_a_failed_request_shows_its_error_and_graph_request_id() -> None:
    error = {"code": "JobQuarantined", "message": "bad", "graphRequestId": "g2", "graphStatus": 400}
    history = [_entry("verify", "failed", message="quarantined")]
    lines = render(_record(state="failed", error=error, history=history))
    assert "  [!!] verify  quarantined" in lines
    assert lines[-2:] == ["  error JobQuarantined: bad", "  graph request-id g2 (status 400)"]


def test_an_action_shows_its_own_steps() -> None:
    lines = render(_record(action="pause", state="queued"))
    steps = [line.split("] ")[1] for line in lines[2:]]
    assert steps == ["find_job", "pause_job"]
    assert lines[0].startswith("r1  pause  queued")


def test_an_entry_without_graph_fields_renders_without_them() -> None:
    """Older records (and other API versions) may leave the Graph fields out altogether."""
    lines = render(_record(state="succeeded", history=[{"step": "verify", "outcome": "succeeded"}]))
    assert "  [ok] verify" in lines
