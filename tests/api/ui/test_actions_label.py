"""Issue 12: /ui shows a request's action (a label beside its state), its reset scope and the
smoke test's outcome."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from service.core.models import SmokeTestResult, State
from service.core.request import SmokeTestSpec
from tests.helpers.ui import add_record, login

USER = "9bb0f679-a883-4a6f-8260-35b491b8b8c8"


async def test_the_action_and_smoke_test_are_shown(client: TestClient[Any, Any]) -> None:
    restart = await add_record(
        client,
        id="c" * 32,
        state=State.FAILED,
        action="restart",
        reset_scope=["Watermark", "QuarantineState"],
        smoke_test=SmokeTestSpec.model_validate({"subjectId": USER, "objectTypeName": "User"}),
        smoke_test_result=SmokeTestResult(
            subject_id=USER,
            object_type_name="User",
            rule_id="scim",
            succeeded=False,
            reason="EntryExportAdd Failure: <b>409</b>",
        ),
    )
    await add_record(client, id="d" * 32, state=State.SUCCEEDED)
    await login(client)
    listing = await (await client.get("/ui")).text()
    assert listing.count('class="action-label"') == 1  # provision needs no label
    assert '<span class="action-label">restart</span>' in listing
    detail = await (await client.get(f"/ui/requests/{restart.id}")).text()
    assert "restart (resetScope Watermark, QuarantineState)" in detail
    assert f'User <span class="mono">{USER}</span>: failed' in detail
    assert "&lt;b&gt;409&lt;/b&gt;" in detail
