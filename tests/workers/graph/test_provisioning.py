"""The provisioning logs' models and URL, pure: both names Graph uses for the error object,
unknown fields ignored, the filter by job and cycle window quoted as OData wants."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

from workers.graph.provisioning import ProvisioningObjectSummary, cycle_url


def test_both_names_of_the_error_object_are_read() -> None:
    for name in ("errorInformation", "errorInfo"):
        entry = ProvisioningObjectSummary.model_validate(
            {
                "jobId": "aws.1.2",
                "cycleId": "c",
                "activityDateTime": "2019-06-24T20:53:08Z",
                "provisioningStatusInfo": {
                    "status": "failure",
                    name: {"errorCode": "ContosoEntryConflict", "reason": "409"},
                },
                "somethingNew": {"x": 1},
            }
        )
        info = entry.provisioning_status_info
        assert info is not None
        assert info.error_info is not None
        assert (entry.status, info.error_info.error_code) == ("failure", "ContosoEntryConflict")


def test_the_first_page_url_filters_by_job_and_the_cycle_window() -> None:
    began = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    ended = datetime(2026, 1, 2, 3, 44, 5, tzinfo=UTC)
    url = cycle_url("scim.abc.O'Neil", began, ended, 500)
    parts = urlsplit(url)
    assert parts.path == "/auditLogs/provisioning"
    query = parse_qs(parts.query)
    assert query["$top"] == ["500"]
    assert query["$filter"] == [
        "jobId eq 'scim.abc.O''Neil' and activityDateTime gt 2026-01-02T03:04:04Z"
        " and activityDateTime lt 2026-01-02T03:44:06Z"
    ]
