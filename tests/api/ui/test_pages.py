"""What the signed-in pages share: the read check (the API's own), parameter problems shown
as notices, and the counters with the applications by health."""

from __future__ import annotations

import json
from pathlib import Path

from redis.asyncio import Redis

from service.api.params import parse_list_params
from service.api.problems import Problem
from service.api.ui.pages import notices
from tests.api.test_routes import AUTH, api_client, make_settings, sp


def test_notices_name_each_field_and_its_reason() -> None:
    try:
        parse_list_params(
            {"state": "nope", "servicePrincipalId": " ", "limit": "0"}, drop_empty=True
        )
    except Problem as problem:
        lines = notices(problem)
    else:
        raise AssertionError("the parameters were accepted")
    assert [line.split(":")[0] for line in lines] == ["state", "limit"]  # blank means any
    assert notices(Problem(403, "Forbidden", "Not yours.")) == ["Not yours."]


async def test_every_page_checks_read_like_the_api(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"callers": {"alpha": {"permissions": ["write"]}}}))
    async with api_client(make_settings(redis_url, access_policy_file=str(policy))) as client:
        for path in (
            "/ui",
            "/ui/applications",
            f"/ui/applications/{sp(1)}",
            "/ui/requests/" + "a" * 32,
        ):
            resp = await client.get(path, headers=AUTH, allow_redirects=False)
            assert resp.status == 403, path
            assert "text/html" in resp.headers["Content-Type"]
            assert "lacks the &#39;read&#39; permission" in await resp.text()
        resp = await client.get("/ui/counters", headers=AUTH)
        assert resp.status == 403
        assert resp.content_type == "application/problem+json"
