"""``lastCycle`` on the wire: camelCase, counts or ``unavailable``, and a round trip through the
stored application JSON."""

from __future__ import annotations

from datetime import UTC, datetime

from service.core.applications import Application, WatchedJob
from service.core.cycles import FailureCount, LastCycle


def test_the_wire_shape_is_camel_case_and_round_trips() -> None:
    ended = datetime(2026, 1, 1, 1, 40, tzinfo=UTC)
    cycle = LastCycle(
        began=datetime(2026, 1, 1, 1, 0, tzinfo=UTC),
        ended=ended,
        succeeded=2,
        failed=1,
        skipped=0,
        top_failures=[FailureCount(reason="ContosoEntryConflict", count=1)],
    )
    app = Application(service_principal_id="sp", jobs=[WatchedJob(job_id="j", last_cycle=cycle)])
    public = app.jobs[0].public()["lastCycle"]
    assert public["topFailures"] == [
        {"reason": "ContosoEntryConflict", "count": 1, "message": None}
    ]
    assert (public["succeeded"], public["unavailable"], public["truncated"]) == (2, None, False)
    again = Application.from_json(app.to_json())
    assert again.jobs[0].last_cycle == cycle
    assert again.jobs[0].last_cycle is not None
    assert again.jobs[0].last_cycle.ended == ended


def test_unavailable_has_no_counts_and_old_records_have_no_cycle() -> None:
    public = LastCycle(unavailable="no permission").model_dump(by_alias=True)
    assert (public["unavailable"], public["succeeded"], public["failed"]) == (
        "no permission",
        None,
        None,
    )
    stored = '{"servicePrincipalId": "sp", "jobs": [{"jobId": "j"}]}'  # before lastCycle
    assert Application.from_json(stored).jobs[0].last_cycle is None
