"""The Graph client against the sandbox: the synchronization calls, typed answers."""

from __future__ import annotations

from tests.helpers.harness import SALESFORCE, SCIM
from workers.graph.client import GraphClient


async def test_lists_templates(graph: GraphClient) -> None:
    resp = await graph.list_templates(SCIM, "crid-1")
    assert sorted(str(t.id) for t in resp.value) == ["scim", "scimV2"]
    assert resp.status == 200
    assert resp.request_id
    assert resp.client_request_id == "crid-1"


async def test_jobs_are_parsed_into_models(graph: GraphClient) -> None:
    created = await graph.create_job(SALESFORCE, "salesforce", "crid")
    assert created.status == 201
    assert created.value.id
    assert created.value.template_id == "salesforce"
    fetched = await graph.get_job(SALESFORCE, created.value.id, "crid")
    assert fetched.value.id == created.value.id
    assert fetched.value.schedule_state  # e.g. "Disabled" before start
    assert fetched.value.status.quarantine is None
