"""The stored record: its public JSON, history and terminal states."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from service.core.models import HistoryEntry, Outcome, Record, State, Step
from tests.helpers.records import SP


def test_record_public_json_and_roundtrip() -> None:
    record = Record(id="a" * 32, service_principal_id=SP, caller="alpha")
    record.retry_until = datetime(2030, 1, 1, tzinfo=UTC)
    public = record.public()
    assert "retryUntil" not in public
    assert "lagSince" not in public
    assert public["servicePrincipalId"] == SP
    assert public["state"] == "queued"
    assert json.loads(json.dumps(public)) == public
    again = Record.from_json(record.to_json())
    assert again == record


def test_history_and_done() -> None:
    record = Record(id="r", service_principal_id=SP)
    at = datetime(2030, 1, 1, tzinfo=UTC)
    record.add(HistoryEntry(step=Step.CREATE_JOB, outcome=Outcome.RETRYING, at=at))
    assert not record.done(Step.CREATE_JOB)
    record.add(HistoryEntry(step=Step.CREATE_JOB, outcome=Outcome.ADOPTED, at=at))
    assert record.done(Step.CREATE_JOB)
    assert record.updated_at == at
    assert record.public()["history"][1]["outcome"] == "adopted"


def test_terminal_states() -> None:
    assert {s for s in State if s.terminal} == {State.SUCCEEDED, State.FAILED, State.CANCELLED}
