"""The /ui status page in real headless Chromium against a real stack (API, worker, sandbox).

Debian's ``chromium`` (``scripts/ensure-chromium``, run by ``make test``) driven by Playwright;
``playwright install`` (a browser download) is never used. With ``UPDATE_SCREENSHOTS=1`` it
refreshes the README's screenshots ``docs/ui-status.png`` and ``docs/ui-request.png``; otherwise
it writes them to the test's temporary folder, so a test run leaves the tree unchanged.

The pages must fit the window at 1280 and 800 px (``scrollWidth <= innerWidth``: no sideways
scrolling, long ids cut with a tooltip, long references wrapped), and the counters must tell
provisioning work (queue depth) from a deferred callback (callbacks pending).
"""

from __future__ import annotations

import base64
import json
import os
import socket
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
CALLBACK_SECRET = "whsec_" + base64.b64encode(b"ui-browser-test-callback-secret!").decode()
LONG_REFERENCE = "CHG0043 GitHub " + "very-long-ticket-reference-without-spaces-" * 4
WIDTHS = (1280, 800)


@dataclass(frozen=True)
class Stack:
    base: str
    redis_url: str
    tenant_id: str


@pytest.fixture
def dead_callback_url() -> Iterator[str]:
    """An https URL on a loopback port that refuses connections (bound, never listening), so a
    callback to it fails and is deferred for a retry."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"https://127.0.0.1:{sock.getsockname()[1]}/hook"


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
        "PROVISIONER_CALLBACK_ALLOWLIST": "127.0.0.1",
        "PROVISIONER_CALLBACK_SECRETS": f"portal:{CALLBACK_SECRET}",
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


def wait_callback_attempt(base: str, request_id: str, timeout_s: float = 30) -> dict[str, Any]:
    """The record once its first callback attempt is recorded (the worker then defers a retry)."""
    deadline = time.monotonic() + timeout_s
    while True:
        record: dict[str, Any] = call(base, "GET", f"/v1/provisioning-requests/{request_id}")
        if record["callbacks"]:
            return record
        assert time.monotonic() < deadline, record
        time.sleep(0.2)


def assert_fits(page: Any, what: str, shots: Path) -> None:
    """At each width the page scrolls only down, never sideways (a screenshot of each width goes
    to ``shots``, the test's temporary folder)."""
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 700})
        page.screenshot(path=str(shots / f"{what}-{width}.png"), full_page=True)
        sizes = page.evaluate(
            "() => [document.documentElement.scrollWidth, window.innerWidth,"
            " document.body.scrollWidth]"
        )
        assert sizes[0] <= sizes[1], (what, width, sizes)
        assert sizes[2] <= sizes[1], (what, width, sizes)
        for header in ("Error", "Updated (UTC)") if what == "list" else ():
            box = page.get_by_role("columnheader", name=header, exact=True).bounding_box()
            assert box is not None, (what, width, header)
            assert box["x"] >= 0, (what, width, header, box)
            assert box["x"] + box["width"] <= width, (what, width, header, box)


def test_status_page_in_headless_chromium(
    stack: Stack, tmp_path: Path, dead_callback_url: str
) -> None:
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
        {
            "servicePrincipalId": SALESFORCE,
            "externalReference": "CHG0042 Salesforce",
            "callbackUrl": dead_callback_url,
        },
    )
    bad = call(
        base,
        "POST",
        "/v1/provisioning-requests",
        {"servicePrincipalId": GITHUB, "externalReference": LONG_REFERENCE},
    )
    good = wait_terminal(base, good["id"])
    bad = wait_terminal(base, bad["id"])
    assert good["state"] == "succeeded", good
    assert bad["state"] == "failed", bad
    graph_request_id = bad["error"]["graphRequestId"]
    assert graph_request_id
    # The succeeded request's callback failed (connection refused) and waits for its retry.
    attempt = wait_callback_attempt(base, good["id"])["callbacks"][0]
    assert not attempt["delivered"], attempt
    # A throttle cool-down of the tenant, as a 429 from Graph leaves it (both requests are done).
    with Redis.from_url(stack.redis_url) as redis:
        redis.set(f"provisioner:queue:cooldown:{stack.tenant_id}", "1", ex=120)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 700})
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
            # Nothing is queued: the deferred callback (and the reconciler's next cron run, also
            # in arq's queue) are not provisioning work; the callback is counted apart.
            expect(page.locator('[data-counter="queueDepth"]')).to_have_text("0")
            expect(page.locator('[data-counter="callbacksPending"]')).to_have_text("1")
            expect(page.locator('[data-counter="inFlight"]')).to_have_text("0")
            expect(page.locator('[data-counter="throttleCooldowns"]')).to_have_text("1")
            expect(page.locator("#cooldowns li")).to_have_count(1)
            expect(page.locator("#cooldowns li")).to_contain_text(stack.tenant_id)
            expect(page.locator("#cooldowns li")).to_contain_text("s left")
            counters = page.evaluate(
                "() => fetch('/ui/counters', {credentials: 'same-origin'}).then(r => r.json())"
            )
            assert counters["queueDepth"] == 0, counters
            assert counters["callbacksPending"] == 1, counters
            # The long reference wraps inside its cell; the ids are cut, whole in the tooltip.
            link = rows.nth(0).locator("a")
            expect(link).to_have_attribute("title", bad["id"])
            assert_fits(page, "list", tmp_path)
            page.set_viewport_size({"width": 1280, "height": 700})
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
            assert_fits(page, "detail", tmp_path)
            page.set_viewport_size({"width": 1280, "height": 700})
            page.screenshot(path=str(shots / "ui-request.png"), full_page=True)

            page.click("text=Sign out")
            page.wait_for_url(base + "/ui/login")
            page.goto(base + "/ui")
            assert page.url == base + "/ui/login"
            assert errors == [], errors
            assert all(url.startswith(base + "/ui") for url in requested), requested
        finally:
            browser.close()
