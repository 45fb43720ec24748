"""The web console in a real browser: Playwright driving Debian's headless chromium against the whole
app served by uvicorn on loopback (the repository's flows, KB, demo directory and roles; Slack pointed
at the Slack Web API stand-in; the outbox worker running in-process, as `helpdesk serve` runs it).

Skipped when the `playwright` package or /usr/bin/chromium is missing; a failure in CI (CI=true), where
.ci/run installs both. Never `playwright install` (it downloads from a CDN). Screenshots are kept under
tests/web/artifacts/ (gitignored).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.channels.slack_harness import ANNOUNCE
from tests.web.console_harness import ADMIN, EMPLOYEE, TECH
from tests.web.served import Served, serving

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"

try:
    from playwright.sync_api import ConsoleMessage, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - the dev dependency is missing
    sync_playwright = None  # type: ignore[assignment]

if sync_playwright is None or not CHROMIUM.exists():
    if os.environ.get("CI") == "true":
        pytest.fail("browser tests need the playwright package and /usr/bin/chromium (apt-get install chromium)",
                    pytrace=False)
    pytest.skip("playwright or /usr/bin/chromium is missing (apt-get install chromium)", allow_module_level=True)


@pytest.fixture
def served(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Served]:
    """The app served on loopback; a test parametrized indirectly with "slack" gets Sign in with Slack."""
    with serving(tmp_path, getattr(request, "param", "demo")) as running:
        yield running


@pytest.fixture
def browser_page(served: Served, request: pytest.FixtureRequest) -> Iterator[Page]:
    assert sync_playwright is not None
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(20000)
        problems: list[str] = []

        def on_console(message: ConsoleMessage) -> None:
            # A refusal page is a 403 on purpose; anything else (CSP violations, script errors) is not.
            if message.type == "error" and "status of 403" not in message.text:
                problems.append(message.text)

        page.on("console", on_console)
        page.on("pageerror", lambda error: problems.append(str(error)))
        try:
            yield page
            # Strict CSP: htmx and Chart.js run without inline script, and nothing else is loaded.
            assert problems == [], problems
        finally:
            page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
            context.close()
            browser.close()


def sign_in(page: Page, served: Served, email: str, path: str = "/console/queue") -> None:
    page.goto(served.url + path)
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator(".demo-banner")).to_contain_text("Demo sign-in")
    page.get_by_label("Email in the demo directory").fill(email)
    page.get_by_role("button", name="Sign in").click()


def unlabelled_fields(page: Page) -> list[str]:
    return list(page.evaluate("""() => [...document.querySelectorAll(
        'input:not([type=hidden]), select, textarea')].filter(e => !e.labels.length && !e.getAttribute('aria-label'))
        .map(e => e.outerHTML)"""))


def test_an_employee_is_refused(browser_page: Page, served: Served) -> None:
    page = browser_page
    sign_in(page, served, EMPLOYEE)
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("for help desk technicians and admins")
    expect(page.get_by_role("navigation")).to_have_count(0)


def test_a_technician_claims_replies_and_resolves(browser_page: Page, served: Served) -> None:
    page = browser_page
    ref = served.open_ticket('Printer jams <script>alert("x")</script>')
    sign_in(page, served, TECH)
    row = page.locator(f"#row-{ref}")
    expect(row).to_contain_text('<script>alert("x")</script>')  # shown as text, never run
    assert unlabelled_fields(page) == []
    # Before htmx has loaded the same button is a plain form post (progressive enhancement); wait for it
    # to test the no-reload path.
    page.wait_for_load_state("load")
    page.wait_for_function("() => window.htmx !== undefined")
    row.get_by_role("button", name=f"Claim {ref}").click()  # htmx: no page load
    expect(page.get_by_role("status")).to_contain_text(f"You claimed {ref}.")
    expect(page.locator(f"#row-{ref}")).to_contain_text(TECH)
    page.get_by_role("link", name=ref).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(ref)
    assert unlabelled_fields(page) == []
    page.get_by_label("Reply to Alice").fill("Which tray is it?")
    page.get_by_role("button", name="Send reply").click()
    expect(page.get_by_role("status")).to_contain_text("Sent to Alice")
    page.get_by_label("Resolution note to the requester (optional)").fill("Cleaned the rollers")
    page.get_by_role("button", name="Resolve").click()
    expect(page.get_by_role("status")).to_contain_text(f"{ref} resolved")
    expect(page.locator("#status")).to_contain_text("resolved")
    # The requester heard it on Slack (through the outbox and the stand-in).
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        texts = " ".join(str(c.params.get("text")) for c in served.standin.calls_to("chat.postMessage"))
        if "Which tray is it?" in texts and "Cleaned the rollers" in texts:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the requester was not messaged on Slack")


def test_an_admin_posts_a_notice_and_watches_delivery_reach_100_percent(browser_page: Page, served: Served) -> None:
    page = browser_page
    sign_in(page, served, ADMIN, "/console/outages")
    expect(page.get_by_role("heading", name="Outages", exact=True)).to_be_visible()
    assert unlabelled_fields(page) == []
    page.get_by_label("Service (required)").fill("Outlook")
    page.get_by_label("What is happening").fill("Mail is delayed by 30 minutes")
    page.get_by_label("Announcement channels").fill(f"slack:{ANNOUNCE}")
    page.get_by_label("Message members of these groups").fill("it-support")
    page.get_by_role("button", name="Post notice").click()
    expect(page.get_by_role("status")).to_contain_text("Notice #1 posted")
    bar = page.locator("#bar-1")
    expect(bar).to_be_visible()
    page.wait_for_function("""() => { const b = document.querySelector('#bar-1');
        return b && Number(b.max) > 1 && Number(b.value) === Number(b.max); }""", timeout=30000)
    label = page.locator("label[for=bar-1]").inner_text()
    total = int(re.search(r"Delivered (\d+) of (\d+)", label).group(2))  # type: ignore[union-attr]
    assert label.startswith(f"Delivered {total} of {total} (100%)") and total >= 4
    posted = {c.params["channel"] for c in served.standin.calls_to("chat.postMessage")
              if "Mail is delayed by 30 minutes" in str(c.params.get("text"))}
    assert ANNOUNCE in posted and len(posted) == total


def test_a_lead_sees_every_chart_drawn(browser_page: Page, served: Served) -> None:
    page = browser_page
    for n, category in enumerate(["printer", "printer", "vpn", "email", "hardware"]):
        served.open_ticket(f"Problem {n}", category=category)
    sign_in(page, served, ADMIN, "/console/reports?since=30d")
    expect(page.get_by_role("heading", name="Reports")).to_be_visible()
    charts = page.locator("canvas[id^=chart-]")
    expect(charts).to_have_count(6)
    for index in range(6):
        expect(charts.nth(index)).to_have_attribute("data-drawn", "true")
    painted = page.evaluate("""() => [...document.querySelectorAll('canvas[id^=chart-]')].map(c => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) { if (d[i] > 0) n++; } return [c.id, n]; })""")
    assert all(count > 500 for _, count in painted), painted
    page.screenshot(path=str(ARTIFACTS / "reports-laptop.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    for path in ("/console/reports?since=30d", "/console/queue", "/console/outages", "/console/"):
        page.goto(served.url + path)
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, (path, overflow)
        page.screenshot(path=str(ARTIFACTS / f"phone-{path.strip('/').replace('/', '-').split('?')[0]}.png"),
                        full_page=True)
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.textContent") == "Skip to content"


@pytest.mark.parametrize("served", ["slack"], indirect=True)
def test_a_technician_signs_in_with_slack(browser_page: Page, served: Served) -> None:
    """Sign in with Slack: the console → the stand-in's authorize endpoint (as slack.com, the person
    already signed in there) → the console's callback → the page asked for."""
    page = browser_page
    served.standin.oidc_signed_in = "U0TECH0001"
    page.goto(served.url + "/console/queue")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator(".demo-banner")).to_have_count(0)
    page.get_by_role("link", name="Sign in with Slack").click()
    expect(page.get_by_role("heading", name="Queue", exact=True)).to_be_visible()
    assert page.url == served.url + "/console/queue"
    assert served.standin.calls_to("openid.connect.token"), "the code was not redeemed at Slack"
