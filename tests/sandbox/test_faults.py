"""The fault engine: its profile and decisions (pure), and each fault at its configured rate
(4-sigma bounds) looking like the real thing over HTTPS."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError

from sandbox.faults import FaultEngine, FaultProfile, format_retry_after
from tests.helpers.harness import SALESFORCE, SLACK_NEW
from tests.helpers.sandbox import Clock, InProcessSandbox, in_process_sandbox

N = 800


def within(count: int, n: int, p: float) -> bool:
    sigma = math.sqrt(n * p * (1 - p))
    return abs(count - n * p) <= 4 * sigma + 1


@pytest.fixture(scope="module")
def certs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sandbox-faults")


@pytest.fixture
async def sb(certs_dir: Path) -> AsyncIterator[InProcessSandbox]:
    async with in_process_sandbox(certs_dir, faults={"activation_delay_ms": 0}) as sandbox:
        yield sandbox


async def status_of(
    sb: InProcessSandbox, method: str, url: str, token: str, json: Any = None
) -> tuple[int, dict[str, str], Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with sb.session.request(method, url, headers=headers, json=json) as resp:
        text = await resp.text()
        return (
            resp.status,
            dict(resp.headers),
            (await resp.json(content_type=None) if text else None),
        )


async def many(sb: InProcessSandbox, method: str, url: str, token: str, n: int) -> Counter[int]:
    async def one() -> int:
        return (await status_of(sb, method, url, token))[0]

    results: Counter[int] = Counter()
    for start in range(0, n, 50):
        results.update(await asyncio.gather(*(one() for _ in range(min(50, n - start)))))
    return results


def set_profile(sb: InProcessSandbox, **fields: Any) -> None:
    sb.ctx.engine.profile = sb.ctx.engine.profile.merged(fields)


async def test_random_errors_per_route_at_configured_rates(sb: InProcessSandbox) -> None:
    token = await sb.token()
    set_profile(sb, errors={"*": {"429": 0.1, "503": 0.05}, "templates.list": {"500": 0.2}})
    got = await many(sb, "GET", sb.sp_url(SALESFORCE, "/templates"), token, N)
    assert within(got[429], N, 0.1), got
    assert within(got[503], N, 0.05), got
    assert within(got[500], N, 0.2), got
    assert got[200] + got[429] + got[503] + got[500] == N
    jobs = await many(sb, "GET", sb.sp_url(SALESFORCE, "/jobs"), token, 400)
    assert jobs[500] == 0
    assert within(jobs[429], 400, 0.1)
    faults = sb.ctx.state.stats_json()["faults"]
    assert faults["429"] == got[429] + jobs[429]
    assert faults["500"] == got[500]


async def test_injected_error_shapes_and_retry_after(sb: InProcessSandbox) -> None:
    token = await sb.token()
    url = sb.sp_url(SALESFORCE, "/jobs")
    for style in ("integer", "decimal", "http-date", "absent"):
        set_profile(sb, errors={"*": {"429": 1.0}}, retry_after_style=style, retry_after_s=2.128)
        status, headers, body = await status_of(sb, "GET", url, token)
        assert status == 429
        assert body["error"]["code"] == "TooManyRequests"
        assert set(body["error"]["innerError"]) == {"date", "request-id", "client-request-id"}
        value = headers.get("Retry-After")
        if style == "integer":
            assert value == "3"
        elif style == "decimal":
            assert value == "2.128"
        elif style == "http-date":
            assert value is not None
            delta = parsedate_to_datetime(value).timestamp() - time.time()
            assert 1 <= delta <= 4
        else:
            assert value is None
    for code, name in ((500, "UnknownError"), (502, "BadGateway"), (504, "GatewayTimeout")):
        set_profile(sb, errors={"*": {"429": 0.0, str(code): 1.0}})
        status, headers, body = await status_of(sb, "GET", url, token)
        assert status == code
        assert body["error"]["code"] == name
        set_profile(sb, errors={"*": {str(code): 0.0}})


async def test_rate_limit_per_tenant_window(sb: InProcessSandbox) -> None:
    token = await sb.token()
    # A window that eight calls fit in on a loaded machine too (the wait is the Retry-After).
    set_profile(sb, rate_limit=5, rate_window_s=3, retry_after_style="decimal")
    url = sb.sp_url(SALESFORCE, "/jobs")
    statuses = [await status_of(sb, "GET", url, token) for _ in range(8)]
    assert [s for s, _, _ in statuses] == [200] * 5 + [429] * 3
    retry_after = float(statuses[5][1]["Retry-After"])
    assert 0 < retry_after <= 3
    await asyncio.sleep(retry_after + 0.02)
    assert (await status_of(sb, "GET", url, token))[0] == 200
    assert sb.ctx.state.stats_json()["faults"]["rate_limited"] == 3


async def test_limit_percentage_above_eighty_percent_and_limit_changed_mid_run(
    sb: InProcessSandbox,
) -> None:
    """Graph's x-ms-throttle-limit-percentage on answers once the tenant uses more than 80%
    of its limit; the limit itself changed at run time through PATCH /_sandbox/faults."""
    token = await sb.token()
    control = f"{sb.base_url}/_sandbox/faults"
    async with sb.session.patch(control, json={"rate_limit": 10, "rate_window_s": 30}) as resp:
        assert resp.status == 200
    url = sb.sp_url(SALESFORCE, "/jobs")
    answers = [await status_of(sb, "GET", url, token) for _ in range(11)]
    assert [s for s, _, _ in answers] == [200] * 10 + [429]
    usage = [h.get("x-ms-throttle-limit-percentage") for _, h, _ in answers[:10]]
    assert usage == [None] * 8 + ["0.90", "1.00"]  # 9 and 10 of 10 are above 80%
    assert "x-ms-throttle-limit-percentage" not in answers[10][1]  # not on the 429 itself
    # Raised mid-run: the same window admits more, and the share reported follows the new limit.
    async with sb.session.patch(control, json={"rate_limit": 12}) as resp:
        assert (await resp.json())["rate_limit"] == 12
    answers = [await status_of(sb, "GET", url, token) for _ in range(3)]
    assert [s for s, _, _ in answers] == [200, 200, 429]
    assert answers[0][1]["x-ms-throttle-limit-percentage"] == "0.92"
    # Lowered below what the window holds: throttled until the window drains below it.
    async with sb.session.patch(control, json={"rate_limit": 5}) as resp:
        assert resp.status == 200
    assert (await status_of(sb, "GET", url, token))[0] == 429
    # 0 turns the header off.
    async with sb.session.patch(
        control, json={"rate_limit": 100, "limit_percentage_from": 0}
    ) as resp:
        assert resp.status == 200
    status, headers, _ = await status_of(sb, "GET", url, token)
    assert status == 200
    assert "x-ms-throttle-limit-percentage" not in headers


async def test_lost_create_responses(sb: InProcessSandbox) -> None:
    token = await sb.token()
    set_profile(sb, lost_create_rate=0.3)
    url = sb.sp_url(SALESFORCE, "/jobs")
    lost = created = 0
    n = 300
    for _ in range(n):
        try:
            status, _, _ = await status_of(
                sb, "POST", url, token, json={"templateId": "salesforce"}
            )
            assert status == 201
            created += 1
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
            lost += 1
    assert within(lost, n, 0.3), lost
    stats = sb.ctx.state.stats_json()
    assert len(stats["jobs"][SALESFORCE]) == n  # every job was made, lost or not
    assert stats["faults"]["lost_response"] == lost


async def test_replication_lag_and_start_conflicts(sb: InProcessSandbox) -> None:
    token = await sb.token()
    # The lag is long enough for the two calls inside it on a loaded machine too.
    lag_s = 2.0
    set_profile(sb, replication_lag_ms=lag_s * 1000, start_conflicts=2)
    status, _, job = await status_of(
        sb, "POST", sb.sp_url(SALESFORCE, "/jobs"), token, json={"templateId": "salesforce"}
    )
    assert status == 201
    url = sb.sp_url(SALESFORCE, f"/jobs/{job['id']}")
    status, _, body = await status_of(sb, "GET", url, token)
    assert status == 404
    assert body["error"]["code"] == "Request_ResourceNotFound"
    assert (await status_of(sb, "POST", f"{url}/start", token))[0] == 404
    await asyncio.sleep(lag_s + 0.02)  # the lag under test ends (a late wake-up changes nothing)
    assert (await status_of(sb, "GET", url, token))[0] == 200
    starts = [(await status_of(sb, "POST", f"{url}/start", token))[0] for _ in range(3)]
    assert starts == [409, 409, 204]
    stats = sb.ctx.state.stats_json()
    assert stats["starts"] == {job["id"]: 1}
    assert stats["faults"]["replication_lag"] == 2
    assert stats["faults"]["start_conflict"] == 2
    assert stats["calls"]["jobs.start"] == {"404": 1, "409": 2, "204": 1}


async def test_new_principal_answers_401_unknown_error(certs_dir: Path) -> None:
    seed = {
        "tenantId": "5f0c1e8a-7d2b-4e6f-9a1c-3b8d5e2f4a60",
        "applications": [
            {
                "clientId": "adf03846-4f4d-4731-8425-4f4b2d8e0197",
                "clientSecret": "s",
                "roles": ["Synchronization.ReadWrite.All"],
            }
        ],
        "servicePrincipals": [
            {"id": SLACK_NEW, "newForMs": 3000, "templates": [{"id": "slack", "default": True}]}
        ],
    }
    async with in_process_sandbox(certs_dir, seed=seed) as sb:
        token = await sb.token()
        status, headers, body = await status_of(
            sb, "GET", sb.sp_url(SLACK_NEW, "/templates"), token
        )
        assert status == 401
        assert body["error"]["code"] == "UnknownError"
        assert body["error"]["message"] == ""
        assert body["error"]["innerError"]["request-id"] == headers["request-id"]
        await asyncio.sleep(3.02)  # "new" ends (a late wake-up changes nothing)
        assert (await status_of(sb, "GET", sb.sp_url(SLACK_NEW, "/templates"), token))[0] == 200
        sb.ctx.reset()  # reset makes it new again
        assert (await status_of(sb, "GET", sb.sp_url(SLACK_NEW, "/templates"), token))[0] == 401


async def test_latency(sb: InProcessSandbox) -> None:
    token = await sb.token()
    # A latency far above what a loaded machine adds to a loopback call, so "not applied"
    # below is told apart from "applied" by a wide margin.
    set_profile(sb, latency_ms=1000, latency_spread_ms=200)
    url = sb.sp_url(SALESFORCE, "/jobs")
    began = time.perf_counter()
    for _ in range(2):
        assert (await status_of(sb, "GET", url, token))[0] == 200
    assert (time.perf_counter() - began) / 2 >= 1.0
    began = time.perf_counter()
    await sb.token()  # latency does not apply to the token endpoint unless latency_token
    assert time.perf_counter() - began < 1.0


async def test_token_endpoint_faults_only_when_configured(sb: InProcessSandbox) -> None:
    set_profile(sb, errors={"*": {"503": 1.0}})
    await sb.token()  # "*" covers Graph routes only
    set_profile(sb, errors={"*": {"503": 0.0}, "token": {"503": 1.0}})
    with pytest.raises(Exception, match="temporarily_unavailable"):
        await sb.token()


async def test_control_plane_faults_and_reset(sb: InProcessSandbox) -> None:
    base = f"{sb.base_url}/_sandbox/faults"
    async with sb.session.patch(
        base, json={"page_size": 2, "errors": {"jobs.get": {"502": 0.5}}}
    ) as r:
        assert r.status == 200
        assert (await r.json())["page_size"] == 2
    async with sb.session.get(base) as r:
        profile = await r.json()
        assert profile["errors"] == {"jobs.get": {"502": 0.5}}
        assert profile["activation_delay_ms"] == 0
    async with sb.session.put(base, json={"create_status": 200}) as r:
        assert (await r.json())["page_size"] == 0
    async with sb.session.put(base, json={"errors": {"*": {"418": 1}}}) as r:
        assert r.status == 400
    token = await sb.token()
    status, _, _ = await status_of(
        sb, "POST", sb.sp_url(SALESFORCE, "/jobs"), token, json={"templateId": "salesforce"}
    )
    assert status == 200
    async with sb.session.post(f"{sb.base_url}/_sandbox/reset") as r:
        assert r.status == 200
    async with sb.session.get(f"{sb.base_url}/_sandbox/stats") as r:
        stats = await r.json()
    assert stats["total_calls"] == 0
    assert stats["jobs"][SALESFORCE] == []
    async with sb.session.get(base) as r:
        assert (await r.json())["create_status"] == 201  # start-up profile restored


def test_profile_merge_and_validation() -> None:
    profile = FaultProfile.model_validate({"errors": {"*": {"429": 0.1}}})
    merged = profile.merged({"errors": {"jobs.create": {"500": 0.2}}, "page_size": 3})
    assert merged.error_rates("jobs.create") == {429: 0.1, 500: 0.2}
    assert merged.error_rates("token") == {}
    assert merged.merged({"errors": {"*": None}}).error_rates("jobs.get") == {}
    with pytest.raises(ValidationError):
        FaultProfile.model_validate({"errors": {"jobs.nope": {"500": 0.1}}})
    with pytest.raises(ValidationError):
        FaultProfile.model_validate({"errors": {"*": {"500": 0.6, "503": 0.6}}})
    with pytest.raises(ValidationError):
        FaultProfile.model_validate({"errors": {"*": {"404": 0.1}}})
    with pytest.raises(ValidationError):
        FaultProfile.model_validate({"no_such_field": 1})


def test_retry_after_styles() -> None:
    now = 1_700_000_000.25
    assert format_retry_after("integer", 1.2, now) == "2"
    assert format_retry_after("decimal", 2.128, now) == "2.128"
    assert format_retry_after("absent", 2, now) is None
    date = format_retry_after("http-date", 1.5, now)
    assert date is not None
    assert parsedate_to_datetime(date).timestamp() == 1_700_000_002  # rounded up


def test_engine_rate_limit_window_and_mixed_styles() -> None:
    clock = Clock()
    profile = FaultProfile(rate_limit=3, rate_window_s=2.0, retry_after_style="mixed")
    engine = FaultEngine(profile, rng=random.Random(1), clock=clock, wall_clock=lambda: 0.0)
    assert [engine.rate_limited("t") for _ in range(3)] == [None, None, None]
    assert engine.rate_limited("t") == pytest.approx(2.0)
    assert engine.rate_limited("other") is None  # per tenant
    clock.t += 1.5
    assert engine.rate_limited("t") == pytest.approx(0.5)
    clock.t += 0.5
    assert engine.rate_limited("t") is None
    styles = [engine.retry_after(1.0) for _ in range(4)]
    assert styles[0] == "1"
    assert styles[1] == "1.000"
    assert styles[3] is None
    assert styles[2] is not None
    assert styles[2].endswith("GMT")


def test_engine_start_conflicts_per_job() -> None:
    engine = FaultEngine(FaultProfile(start_conflicts=2), clock=Clock(), wall_clock=lambda: 0.0)
    assert [engine.start_conflict("a") for _ in range(3)] == [True, True, False]
    assert engine.start_conflict("b") is True


def test_every_graph_route_takes_injected_errors() -> None:
    """Each route the sandbox serves can be named in ``errors`` (the gallery ones included)."""
    from sandbox import faults, routes

    assert {r.name for r in routes.GRAPH_ROUTES} <= set(faults.GRAPH_ROUTES)
    FaultProfile.model_validate({"errors": {"applicationTemplates.instantiate": {429: 1.0}}})
