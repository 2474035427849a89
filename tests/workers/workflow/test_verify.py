"""verify's rule for a job stopped after its start, reading by reading (the rule is kept on the
record because verify spans several runs). The whole step against the sandbox is in
test_steps.py; a job an admin pauses during verify, through real processes, in
tests/chaos/test_truth_signals.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from service.core.models import Record
from workers.workflow.verify import _stopped_since

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _record() -> Record:
    return Record(id="r", service_principal_id="sp")


def test_a_job_never_read_running_waits_for_the_timeout() -> None:
    """Right after a start a lagging replica may still show the old Disabled: never early."""
    rec = _record()
    assert [_stopped_since(rec, False, _at(t), 15) for t in range(0, 120, 2)] == [None] * 60
    assert rec.verify_stopped_since is None


def test_stopped_after_running_fails_once_the_window_has_passed() -> None:
    rec = _record()
    assert _stopped_since(rec, True, _at(0), 15) is None
    assert rec.verify_ran_at == _at(0)
    assert _stopped_since(rec, False, _at(4), 15) is None
    assert _stopped_since(rec, False, _at(10), 15) is None
    assert _stopped_since(rec, False, _at(19), 15) == _at(4)
    # kept across runs: the record is what a deferred verify resumes with
    again = Record.from_json(rec.to_json())
    assert (again.verify_ran_at, again.verify_stopped_since) == (_at(0), _at(4))
    assert "verifyRanAt" not in rec.public()


def test_a_running_reading_starts_the_window_over() -> None:
    rec = _record()
    _stopped_since(rec, True, _at(0), 15)
    _stopped_since(rec, False, _at(2), 15)
    assert _stopped_since(rec, True, _at(10), 15) is None  # a replica showing it running again
    assert rec.verify_stopped_since is None
    assert _stopped_since(rec, False, _at(12), 15) is None
    assert _stopped_since(rec, False, _at(20), 15) is None
    assert _stopped_since(rec, False, _at(27), 15) == _at(12)


def test_a_zero_window_still_needs_two_readings() -> None:
    rec = _record()
    _stopped_since(rec, True, _at(0), 0)
    assert _stopped_since(rec, False, _at(1), 0) is None
    assert _stopped_since(rec, False, _at(2), 0) == _at(1)
