"""The /ui status page in real headless Chromium against a real stack (API, worker, sandbox).

Debian's ``chromium`` (``scripts/ensure-chromium``, run by ``make test``) driven by Playwright;
``playwright install`` (a browser download) is never used. With ``UPDATE_SCREENSHOTS=1`` it
refreshes the README's screenshots ``docs/ui-status.png`` and ``docs/ui-request.png``; otherwise
it writes them to the test's temporary folder, so a test run leaves the tree unchanged.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from service.core.crypto import new_encryption_key
from service.core.settings import hash_api_key
from tests.helpers.harness import GITHUB, SALESFORCE
from tests.helpers.processes import REPO_ROOT, start_api, start_worker
from tests.helpers.redis_server import RedisServer
from tests.helpers.sandbox import SandboxProcess

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="no /usr/bin/chromium: run scripts/ensure-chromium (apt-get install chromium)",
    ),
]
KEY = "pk_ui-browser-test-key-abcdefghijkl"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS = REPO_ROOT / "docs"


@dataclass(frozen=True)
class Stack:
    base: str
    redis_url: str
    tenant_id: str


@pytest.fixture
def stack(tmp_path: Path, fresh_sandbox: SandboxProcess) -> Iterator[Stack]:
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    env = {
        **fresh_sandbox.env(),
        "PROVISIONER_REDIS_URL": redis.url,
        "PROVISIONER_API_KEYS": f"portal:{hash_api_key(KEY)}",
        "PROVISIONER_ENCRYPTION_KEY": new_encryption_key(),
        "PROVISIONER_VERIFY_POLL_S": "0.1",
        "PROVISIONER_VERIFY_SETTLE_S": "1",
    }
    api, base = start_api(env, tmp_path)
    worker = start_worker(env, tmp_path)
    try:
        yield Stack(base, redis.url, fresh_sandbox.tenant_id)
    finally:
        worker.stop()
        api.stop()
        redis.stop()


def call(base: str, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(  # noqa: S310 - loopback
        base + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310
        return json.loads(resp.read())


def wait_terminal(base: str, request_id: str, timeout_s: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        record: dict[str, Any] = call(base, "GET", f"/v1/provisioning-requests/{request_id}")
        if record["state"] in {"succeeded", "failed", "cancelled"}:
            return record
        assert time.monotonic() < deadline, record
        time.sleep(0.2)


def test_status_page_in_headless_chromium(stack: Stack, tmp_path: Path) -> None:
    shots = DOCS if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed: pip install -e '.[dev]'"
    )
    expect, sync_playwright = sync_api.expect, sync_api.sync_playwright

    base = stack.base
    good = call(
        base,
        "POST",
        "/v1/provisioning-requests",
        {"servicePrincipalId": SALESFORCE, "externalReference": "CHG0042 Salesforce"},
    )
    bad = call(
        base,
        "POST",
        "/v1/provisioning-requests",
        {"servicePrincipalId": GITHUB, "externalReference": "CHG0043 GitHub"},
    )
    good = wait_terminal(base, good["id"])
    bad = wait_terminal(base, bad["id"])
    assert good["state"] == "succeeded", good
    assert bad["state"] == "failed", bad
    graph_request_id = bad["error"]["graphRequestId"]
    assert graph_request_id
    # A throttle cool-down of the tenant, as a 429 from Graph leaves it (both requests are done).
    with Redis.from_url(stack.redis_url) as redis:
        redis.set(f"provisioner:queue:cooldown:{stack.tenant_id}", "1", ex=120)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 400})
            page.set_default_timeout(10_000)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            # Console errors too, except the browser's note on the bad key's 401 page.
            page.on(
                "console",
                lambda msg: (
                    errors.append(f"{msg.text} {msg.location}")
                    if msg.type == "error" and "status of 401" not in msg.text
                    else None
                ),
            )
            requested: list[str] = []
            page.on("request", lambda req: requested.append(req.url))

            page.goto(base + "/ui")
            assert page.url == base + "/ui/login"
            page.fill("#apiKey", "not-a-key")
            page.click("button[type=submit]")
            expect(page.get_by_role("alert")).to_contain_text("not valid")

            page.fill("#apiKey", KEY)
            page.click("button[type=submit]")
            page.wait_for_url(base + "/ui")
            expect(page.locator("header .who")).to_contain_text("portal")
            rows = page.locator("table.requests tbody tr")
            expect(rows).to_have_count(2)
            expect(rows.nth(0)).to_contain_text("failed")  # newest first
            expect(rows.nth(0)).to_contain_text("TemplateAmbiguous")
            expect(rows.nth(1)).to_contain_text("succeeded")
            # The counters render, and the script refreshed them from /ui/counters.
            expect(page.locator("#counters-updated")).to_contain_text("updated")
            expect(page.locator('[data-counter="workersAlive"]')).to_have_text("1")
            expect(page.locator('[data-counter="queueDepth"]')).to_have_text("0")
            expect(page.locator('[data-counter="inFlight"]')).to_have_text("0")
            expect(page.locator('[data-counter="throttleCooldowns"]')).to_have_text("1")
            expect(page.locator("#cooldowns li")).to_have_count(1)
            expect(page.locator("#cooldowns li")).to_contain_text(stack.tenant_id)
            expect(page.locator("#cooldowns li")).to_contain_text("s left")
            page.screenshot(path=str(shots / "ui-status.png"), full_page=True)

            page.select_option("select[name=state]", "failed")
            page.click("form.filters button")
            expect(rows).to_have_count(1)
            rows.nth(0).locator("a").click()
            page.wait_for_url(f"{base}/ui/requests/{bad['id']}")
            expect(page.locator("#error .code")).to_have_text("TemplateAmbiguous")
            expect(page.locator("#error .graph-request-id")).to_have_text(graph_request_id)
            timeline = page.locator("table.timeline tbody tr")
            expect(timeline.first).to_contain_text("resolve_template")
            expect(timeline.first).to_contain_text(graph_request_id)
            page.screenshot(path=str(shots / "ui-request.png"), full_page=True)

            page.click("text=Sign out")
            page.wait_for_url(base + "/ui/login")
            page.goto(base + "/ui")
            assert page.url == base + "/ui/login"
            assert errors == [], errors
            assert all(url.startswith(base + "/ui") for url in requested), requested
        finally:
            browser.close()
