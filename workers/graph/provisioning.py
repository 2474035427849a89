"""The provisioning logs (``GET /auditLogs/provisioning``), typed: the provisioningObjectSummary
fields the health watch reads, and one page of them per call.

Reference: the provisioningObjectSummary list page (``$filter`` with ``eq``, ``contains``,
``gt``, ``lt``; ``$top``; ``$skiptoken`` in the opaque ``@odata.nextLink``; "The filters are
all case sensitive") and resource page (``jobId``, ``cycleId``, ``changeId``,
``activityDateTime``, ``provisioningAction``, ``provisioningStatusInfo``). The status page
names the error object ``errorInfo`` while the list examples send ``errorInformation``: both
are read. The call needs ``AuditLog.Read.All``; without it Graph answers 403, which the caller
turns into "unavailable" rather than a failure.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from pydantic import AliasChoices, Field

from service.core.errors import GraphError
from workers.graph.apps import odata_string
from workers.graph.client import GraphClient
from workers.graph.models import Collection, GraphModel, Time
from workers.graph.response import GraphResponse

PATH = "/auditLogs/provisioning"
ROUTE = "auditLogs.provisioning"
#: The margin around a cycle's own times: an entry logged at the very second the cycle began
#: or ended still falls inside the window (``gt`` and ``lt`` are strict).
WINDOW_MARGIN = timedelta(seconds=1)


class ProvisioningErrorInfo(GraphModel):
    error_code: str | None = None
    reason: str | None = None
    error_category: str | None = None


class ProvisioningStatusInfo(GraphModel):
    """``status``: ``success``, ``warning``, ``failure``, ``skipped`` or ``unknownFutureValue``."""

    status: str | None = None
    error_info: ProvisioningErrorInfo | None = Field(
        default=None, validation_alias=AliasChoices("errorInformation", "errorInfo")
    )


class ProvisioningObjectSummary(GraphModel):
    """One object a cycle processed."""

    id: str | None = None
    activity_date_time: Time = None
    job_id: str | None = None
    cycle_id: str | None = None
    change_id: str | None = None
    provisioning_action: str | None = None
    provisioning_status_info: ProvisioningStatusInfo | None = None

    @property
    def status(self) -> str:
        info = self.provisioning_status_info
        return ((info.status if info else None) or "").lower()


class ProvisioningPage(GraphModel):
    """One page: its entries and the opaque link to the next one."""

    items: list[ProvisioningObjectSummary] = Field(default_factory=list)
    next_link: str | None = None


def cycle_url(job_id: str, began: datetime, ended: datetime, top: int) -> str:
    """The first page's URL: the job's entries logged between its cycle's ``timeBegan`` and
    ``timeEnded`` (with :data:`WINDOW_MARGIN`), ``top`` a page."""
    after = (began.astimezone(UTC) - WINDOW_MARGIN).strftime("%Y-%m-%dT%H:%M:%SZ")
    before = (ended.astimezone(UTC) + WINDOW_MARGIN).strftime("%Y-%m-%dT%H:%M:%SZ")
    text = (
        f"jobId eq {odata_string(job_id)} and activityDateTime gt {after}"
        f" and activityDateTime lt {before}"
    )
    return f"{PATH}?$filter={quote(text, safe='')}&$top={top}"


async def provisioning_page(
    graph: GraphClient, url: str, crid: str
) -> GraphResponse[ProvisioningPage]:
    """GET one page (``url``: :func:`cycle_url` or a nextLink, followed as it is)."""
    resp = await graph.request("GET", url, client_request_id=crid, route=ROUTE)
    try:
        page = Collection.model_validate(resp.value if resp.value is not None else {})
        items = [ProvisioningObjectSummary.model_validate(raw) for raw in page.value]
    except ValueError as e:
        raise _malformed(resp, url, e) from None
    return GraphResponse(
        resp.status,
        ProvisioningPage(items=items, next_link=page.next_link),
        resp.request_id,
        crid,
        resp.throttle_usage,
    )


def _malformed(resp: GraphResponse[Any], url: str, e: ValueError) -> GraphError:
    return GraphError(
        resp.status,
        "MalformedResponse",
        f"the answer is not a page of provisioningObjectSummary: {str(e).splitlines()[0]}",
        resp.request_id,
        client_request_id=resp.client_request_id,
        method="GET",
        url=url,
    )
