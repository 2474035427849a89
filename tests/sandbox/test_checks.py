"""The checks a Graph call passes before its handler (over TLS): the token and its roles, an
expired token, unknown principals, wrong methods and unknown paths."""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.helpers.harness import GITHUB, OWNED_BY_CLIENT, READ_ONLY_CLIENT, SALESFORCE
from tests.helpers.sandbox import (
    InProcessSandbox,
    assert_graph_error,
    graph_call,
    in_process_sandbox,
)


async def test_auth_errors(sb: InProcessSandbox) -> None:
    url = sb.sp_url(SALESFORCE, "/jobs")
    status, headers, body = await graph_call(sb, "GET", url, token=None)
    assert status == 401
    assert_graph_error(status, headers, body, "InvalidAuthenticationToken")
    assert headers["client-request-id"] == headers["request-id"]
    token = await sb.token()
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    status, headers, body = await graph_call(sb, "GET", url, token=tampered)
    assert status == 401
    assert_graph_error(status, headers, body, "InvalidAuthenticationToken")

    read_only = await sb.token(READ_ONLY_CLIENT[0])
    assert (await graph_call(sb, "GET", url, token=read_only))[0] == 200
    status, headers, body = await graph_call(
        sb, "POST", url, token=read_only, json={"templateId": "salesforce"}
    )
    assert status == 401
    assert_graph_error(status, headers, body, "UnknownError")
    assert body["error"]["message"] == ""
    owned_by = await sb.token(OWNED_BY_CLIENT[0])
    status, _, _ = await graph_call(
        sb, "POST", url, token=owned_by, json={"templateId": "salesforce"}
    )
    assert status == 201


async def test_expired_token(certs_dir: Path) -> None:
    import asyncio

    async with in_process_sandbox(certs_dir, token_lifetime_s=1) as sb:
        token = await sb.token()
        await asyncio.sleep(2.05)
        status, headers, body = await graph_call(
            sb, "GET", sb.sp_url(SALESFORCE, "/jobs"), token=token
        )
        assert status == 401
        assert_graph_error(status, headers, body, "InvalidAuthenticationToken")
        assert "expired" in body["error"]["message"]


async def test_not_found_bad_request_and_unknown_paths(sb: InProcessSandbox) -> None:
    token = await sb.token()
    unknown_sp = str(uuid.uuid4())
    for method, suffix in (("GET", "/templates"), ("GET", "/jobs"), ("POST", "/jobs/x.y.z/start")):
        status, headers, body = await graph_call(
            sb, method, sb.sp_url(unknown_sp, suffix), token=token
        )
        assert status == 404, suffix
        assert_graph_error(status, headers, body, "Request_ResourceNotFound")
    for payload in ({"templateId": "nope"}, {}, {"templateId": 3}):
        status, headers, body = await graph_call(
            sb, "POST", sb.sp_url(GITHUB, "/jobs"), token=token, json=payload
        )
        assert status == 400, payload
        assert_graph_error(status, headers, body, "BadRequest")
    async with sb.session.post(
        sb.sp_url(GITHUB, "/jobs"),
        data=b"{not json",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    ) as resp:
        assert resp.status == 400
    status, headers, body = await graph_call(sb, "GET", f"{sb.graph_url}/nothing/here", token=token)
    assert status == 400
    assert_graph_error(status, headers, body, "BadRequest")
    status, headers, body = await graph_call(
        sb, "DELETE", sb.sp_url(GITHUB, "/templates"), token=token
    )
    assert status == 405
    assert_graph_error(status, headers, body, "MethodNotAllowed")
    status, _, _ = await graph_call(
        sb, "POST", sb.sp_url(GITHUB, "/jobs/validateCredentials"), token=token,
        json={"credentials": [], "templateId": "nope"},
    )  # fmt: skip
    assert status == 400
