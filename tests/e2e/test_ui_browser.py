"""The /ui status page in real headless Chromium against a real stack (API, worker with its
health watch, sandbox), with an access policy that has an operator and a Standard Webhooks
source whose requests belong to ``webhook:standard``.

Debian's ``chromium`` (``scripts/ensure-chromium``, run by ``make test``) driven by Playwright;
``playwright install`` (a browser download) is never used. With ``UPDATE_SCREENSHOTS=1`` it
refreshes the screenshots ``docs/ui-status.png``, ``docs/ui-request.png`` and
``docs/ui-applications.png``; otherwise it writes them to the test's temporary folder, so a test
run leaves the tree unchanged.

The pages must fit the window at 1280 and 800 px (``scrollWidth <= innerWidth``: no sideways
scrolling, long ids cut with a tooltip, long references wrapped), the counters must tell
provisioning work (queue depth) from deferred callbacks (callbacks pending), the applications
view must show a job the sandbox quarantined after it succeeded, and the operator must see the
webhook caller's request that the portal caller does not.
"""

from __future__ import annotations

import asyncio
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

from service.core import signing
from service.core.config_values import hash_api_key
from service.core.crypto import new_encryption_key
from tests.helpers.harness import GITHUB, SALESFORCE, SCIM
from tests.helpers.processes import REPO_ROOT, start_api, start_worker
from tests.helpers.redis_server import RedisServer
from tests.helpers.sandbox import SandboxProcess
from tests.helpers.tenant_admin import TenantAdmin

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="no /usr/bin/chromium: run scripts/ensure-chromium (apt-get install chromium)",
    ),
]
KEY = "pk_ui-browser-test-key-abcdefghijkl"
OPS_KEY = "pk_ui-browser-operator-key-0123456"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"ui-browser-standard-webhook-key!").decode()
POLICY = {
    "callers": {
        "portal": {"permissions": ["read", "write"]},
        "ops": {"permissions": ["read", "write", "operator"]},
        "webhook:standard": {"permissions": ["write"]},
    }
}
WEBHOOKS = """sources:
  standard:
    kind: standard
    secret_env: [UI_E2E_STANDARD_WEBHOOK_SECRET]
    mapping:
      servicePrincipalId: data.servicePrincipalId
      templateId: data.templateId
      externalReference: data.ticket
"""
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
    sandbox: SandboxProcess


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
    policy, webhooks = tmp_path / "policy.json", tmp_path / "webhooks.yaml"
    policy.write_text(json.dumps(POLICY))
    webhooks.write_text(WEBHOOKS)
    env = {
        **fresh_sandbox.env(),
        "PROVISIONER_REDIS_URL": redis.url,
        "PROVISIONER_API_KEYS": f"portal:{hash_api_key(KEY)},ops:{hash_api_key(OPS_KEY)}",
        "PROVISIONER_ACCESS_POLICY_FILE": str(policy),
        "PROVISIONER_WEBHOOKS_FILE": str(webhooks),
        "UI_E2E_STANDARD_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "PROVISIONER_WATCH_SCHEDULE": "2,3,5",
        "PROVISIONER_WATCH_INTERVAL_S": "1",
        "PROVISIONER_ENCRYPTION_KEY": new_encryption_key(),
        "PROVISIONER_VERIFY_POLL_S": "0.1",
        "PROVISIONER_VERIFY_SETTLE_S": "1",
        "PROVISIONER_CALLBACK_ALLOWLIST": "127.0.0.1",
        "PROVISIONER_CALLBACK_SECRETS": f"portal:{CALLBACK_SECRET}",
    }
    api, base = start_api(env, tmp_path)
    worker = start_worker(env, tmp_path)
    try:
        yield Stack(base, redis.url, fresh_sandbox.tenant_id, fresh_sandbox)
    finally:
        worker.stop()
        api.stop()
        redis.stop()


def call(base: str, method: str, path: str, body: Any = None, key: str = KEY) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(  # noqa: S310 - loopback
        base + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310
        return json.loads(resp.read())


def wait_terminal(
    base: str, request_id: str, timeout_s: float = 30, key: str = KEY
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        path = f"/v1/provisioning-requests/{request_id}"
        record: dict[str, Any] = call(base, "GET", path, key=key)
        if record["state"] in {"succeeded", "failed", "cancelled"}:
            return record
        assert time.monotonic() < deadline, record
        time.sleep(0.2)


def wait_job_health(base: str, sp: str, health: str, timeout_s: float = 30) -> dict[str, Any]:
    """The application once the watch has read its job in ``health`` (each poll one read)."""
    deadline = time.monotonic() + timeout_s
    while True:
        app: dict[str, Any] = call(base, "GET", f"/v1/applications/{sp}")
        if app["jobs"] and app["jobs"][0]["checkedAt"] and app["jobs"][0]["health"] == health:
            return app
        assert time.monotonic() < deadline, app
        time.sleep(0.2)


def send_ticket(base: str, sp: str, template: str, ticket: str) -> str:
    """A signed Standard Webhooks delivery; the id of the request it made."""
    body = json.dumps(
        {
            "type": "ticket.created",
            "data": {"servicePrincipalId": sp, "templateId": template, "ticket": ticket},
        }
    ).encode()
    headers = signing.headers(WEBHOOK_SECRET, f"ui-e2e-{ticket}", int(time.time()), body)
    req = urllib.request.Request(  # noqa: S310 - loopback
        base + "/v1/webhooks/standard",
        data=body,
        method="POST",
        headers={**headers, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310
        assert resp.status == 202
        return str(resp.headers["Location"]).rsplit("/", 1)[1]


def wait_callback_attempt(base: str, request_id: str, timeout_s: float = 30) -> dict[str, Any]:
    """The record once its first callback attempt is recorded (the worker then defers a retry)."""
    deadline = time.monotonic() + timeout_s
    while True:
        record: dict[str, Any] = call(base, "GET", f"/v1/provisioning-requests/{request_id}")
        if record["callbacks"]:
            return record
        assert time.monotonic() < deadline, record
        time.sleep(0.2)


def assert_fits(page: Any, what: str, shots: Path, headers: tuple[str, ...] = ()) -> None:
    """At each width the page scrolls only down, never sideways, and each of ``headers`` (column
    headers) is inside the window (a screenshot of each width goes to ``shots``, the test's
    temporary folder)."""
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 700})
        page.screenshot(path=str(shots / f"{what}-{width}.png"), full_page=True)
        sizes = page.evaluate(
            "() => [document.documentElement.scrollWidth, window.innerWidth,"
            " document.body.scrollWidth]"
        )
        assert sizes[0] <= sizes[1], (what, width, sizes)
        assert sizes[2] <= sizes[1], (what, width, sizes)
        for header in headers:
            box = page.get_by_role("columnheader", name=header, exact=True).first.bounding_box()
            assert box is not None, (what, width, header)
            assert box["x"] >= 0, (what, width, header, box)
            assert box["x"] + box["width"] <= width, (what, width, header, box)
    page.set_viewport_size({"width": 1280, "height": 700})


@dataclass(frozen=True)
class Made:
    """What the test made before opening the browser."""

    good: dict[str, Any]
    bad: dict[str, Any]
    scim: dict[str, Any]
    ticket: dict[str, Any]


def make_requests(stack: Stack, dead_callback_url: str) -> Made:
    """The portal's three requests (one fails), a ticket's, then a quarantine after success:
    an admin breaks the Salesforce job's credentials and the watch reads it quarantined."""
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
    scim = call(
        base,
        "POST",
        "/v1/provisioning-requests",
        {"servicePrincipalId": SCIM, "externalReference": "CHG0044 SCIM"},
    )
    ticket_id = send_ticket(base, GITHUB, "gitHubEnterpriseCloud", "IAM-1077")
    made = Made(
        good=wait_terminal(base, good["id"]),
        bad=wait_terminal(base, bad["id"]),
        scim=wait_terminal(base, scim["id"]),
        ticket=wait_terminal(base, ticket_id, key=OPS_KEY),
    )
    for record in (made.good, made.scim, made.ticket):
        assert record["state"] == "succeeded", record
    assert made.bad["state"] == "failed", made.bad
    assert made.ticket["caller"] == "webhook:standard"
    # The succeeded request's callback failed (connection refused) and waits for its retry.
    attempt = wait_callback_attempt(base, good["id"])["callbacks"][0]
    assert not attempt["delivered"], attempt
    wait_job_health(base, SALESFORCE, "healthy")
    wait_job_health(base, SCIM, "healthy")
    asyncio.run(TenantAdmin(stack.sandbox).break_credentials(SALESFORCE, made.good["jobId"]))
    wait_job_health(base, SALESFORCE, "quarantined")
    # A throttle cool-down of the tenant, as a 429 from Graph leaves it (all requests are done).
    with Redis.from_url(stack.redis_url) as redis:
        redis.set(f"provisioner:queue:cooldown:{stack.tenant_id}", "1", ex=120)
    return made


def test_status_page_in_headless_chromium(
    stack: Stack, tmp_path: Path, dead_callback_url: str
) -> None:
    shots = DOCS if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed: pip install -e '.[dev]'"
    )
    expect, sync_playwright = sync_api.expect, sync_api.sync_playwright

    base = stack.base
    made = make_requests(stack, dead_callback_url)
    bad = made.bad
    graph_request_id = bad["error"]["graphRequestId"]
    assert graph_request_id

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

            sign_in(page, base, KEY)
            expect(page.locator("header .who")).to_contain_text("portal")
            rows = page.locator("table.requests tbody tr")
            expect(rows).to_have_count(3)  # the portal's own: not the ticket's request
            expect(rows.nth(0)).to_contain_text("succeeded")  # newest first
            expect(rows.nth(1)).to_contain_text("failed")
            expect(rows.nth(1)).to_contain_text("TemplateAmbiguous")
            expect(page.locator("table.requests")).not_to_contain_text("IAM-1077")
            expect(page.get_by_role("columnheader", name="Caller")).to_have_count(0)
            # The counters render, and the script refreshed them from /ui/counters.
            expect(page.locator("#counters-updated")).to_contain_text("updated")
            expect(page.locator('[data-counter="workersAlive"]')).to_have_text("1")
            # Nothing is queued: the deferred callback and the reconciler's next cron run, also
            # in arq's queue, are not provisioning work; the callback is counted apart. (The
            # health change's callback to the same refusing URL, job "healthcb:...", is in
            # neither count.)
            expect(page.locator('[data-counter="queueDepth"]')).to_have_text("0")
            expect(page.locator('[data-counter="callbacksPending"]')).to_have_text("1")
            expect(page.locator('[data-counter="inFlight"]')).to_have_text("0")
            expect(page.locator('[data-counter="throttleCooldowns"]')).to_have_text("1")
            expect(page.locator("#cooldowns li")).to_have_count(1)
            expect(page.locator("#cooldowns li")).to_contain_text(stack.tenant_id)
            expect(page.locator("#cooldowns li")).to_contain_text("s left")
            expect(page.locator('[data-health="quarantined"]')).to_have_text("1")
            expect(page.locator('[data-health="healthy"]')).to_have_text("2")
            counters = page.evaluate(
                "() => fetch('/ui/counters', {credentials: 'same-origin'}).then(r => r.json())"
            )
            assert counters["queueDepth"] == 0, counters
            assert counters["callbacksPending"] == 1, counters
            assert counters["applications"]["quarantined"] == 1, counters
            # The long reference wraps inside its cell; the ids are cut, whole in the tooltip.
            link = rows.nth(1).locator("a")
            expect(link).to_have_attribute("title", bad["id"])
            assert_fits(page, "list", tmp_path, ("Error", "Updated (UTC)"))
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
            assert_fits(page, "detail", tmp_path, ("Message",))
            page.screenshot(path=str(shots / "ui-request.png"), full_page=True)

            check_applications(page, expect, made, shots, tmp_path)
            page.click("text=Sign out")
            page.wait_for_url(base + "/ui/login")
            check_operator(page, expect, made, tmp_path, base)

            page.click("text=Sign out")
            page.wait_for_url(base + "/ui/login")
            page.goto(base + "/ui")
            assert page.url == base + "/ui/login"
            assert errors == [], errors
            assert all(url.startswith(base + "/ui") for url in requested), requested
        finally:
            browser.close()


def sign_in(page: Any, base: str, key: str) -> None:
    page.fill("#apiKey", key)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/ui")


def check_applications(page: Any, expect: Any, made: Made, shots: Path, tmp_path: Path) -> None:
    """The Applications tab: the portal's two applications (the ticket's is not its), the
    quarantined one first by health badge and reason, then its detail page."""
    page.get_by_role("link", name="Applications", exact=True).click()
    page.wait_for_url("**/ui/applications")
    rows = page.locator("table.applications tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("table.applications")).not_to_contain_text(GITHUB)
    salesforce = rows.filter(has_text=SALESFORCE)
    expect(salesforce.locator(".badge")).to_have_text("quarantined")
    expect(salesforce.locator(".reason")).to_contain_text("EncounteredQuarantineException")
    expect(rows.filter(has_text=SCIM).locator(".badge")).to_have_text("healthy")
    assert_fits(page, "applications", tmp_path, ("Reason", "Next check (UTC)"))
    page.screenshot(path=str(shots / "ui-applications.png"), full_page=True)

    page.select_option("select[name=health]", "quarantined")
    page.click("form.filters button")
    expect(rows).to_have_count(1)
    rows.nth(0).locator("a").click()
    page.wait_for_url(f"**/ui/applications/{SALESFORCE}")
    job = page.locator("section.job").first
    expect(job).to_contain_text(made.good["jobId"])
    expect(job.locator(".quarantine-reason")).to_have_text("EncounteredQuarantineException")
    expect(job.locator(".quarantine-error")).to_contain_text("SandboxInvalidCredentials")
    history = job.locator("table.history tbody tr")
    expect(history.first).to_contain_text("quarantined")
    expect(page.locator("table.app-requests")).to_contain_text(made.good["id"])
    assert_fits(page, "application", tmp_path, ("Reason",))
    page.locator("table.app-requests a").first.click()
    page.wait_for_url(f"**/ui/requests/{made.good['id']}")
    expect(page.locator("dl.summary").first).to_contain_text("quarantined")


def check_operator(page: Any, expect: Any, made: Made, tmp_path: Path, base: str) -> None:
    """The operator sees every caller's requests, the ticket's among them, with their caller,
    and filters by caller."""
    sign_in(page, base, OPS_KEY)
    expect(page.locator("header .who")).to_contain_text("ops")
    rows = page.locator("table.requests tbody tr")
    expect(rows).to_have_count(4)
    ticket = rows.filter(has_text="IAM-1077")
    expect(ticket.locator("td.caller")).to_have_text("webhook:standard")
    assert_fits(page, "operator-list", tmp_path, ("Caller", "Error", "Updated (UTC)"))
    page.fill("input[name=caller]", "webhook:standard")
    page.click("form.filters button")
    expect(rows).to_have_count(1)
    rows.nth(0).locator("a").click()
    page.wait_for_url(f"**/ui/requests/{made.ticket['id']}")
    expect(page.locator("dl.summary").first).to_contain_text("webhook:standard")
