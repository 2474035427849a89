"""The route table as served: both Graph versions, with and without a trailing slash."""

from __future__ import annotations

from tests.helpers.harness import SALESFORCE
from tests.helpers.sandbox import (
    InProcessSandbox,
    graph_call,
)


async def test_beta_and_trailing_slash(sb: InProcessSandbox) -> None:
    token = await sb.token()
    status, _, body = await graph_call(
        sb, "GET", sb.sp_url(SALESFORCE, "/templates/", version="beta"), token=token
    )
    assert status == 200
    assert body["@odata.context"].startswith(f"{sb.base_url}/beta/")
    status, _, job = await graph_call(
        sb,
        "POST",
        sb.sp_url(SALESFORCE, "/jobs/", version="beta"),
        token=token,
        json={"templateId": "salesforce"},
    )
    assert status == 201
    status, _, got = await graph_call(
        sb, "GET", sb.sp_url(SALESFORCE, f"/jobs/{job['id']}"), token=token
    )
    assert status == 200
    assert got["id"] == job["id"]
