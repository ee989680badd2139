"""The portal in a real browser: Debian's Chromium driven by Playwright against `live_server`.

Playwright's sync API runs an event loop in this thread, which makes Django refuse ORM calls
from it (SynchronousOnlyOperation); the test's own ORM calls are plain sync code, so allow them.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from django.conf import settings

from courses.services import demo_seed

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("fast_password_hashing")]

CHROMIUM = "/usr/bin/chromium"
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
# The README's screenshot is refreshed only on request (UPDATE_SCREENSHOTS=1), so a test run
# leaves the work tree clean; otherwise the shot still proves the page renders.
SCREENSHOT = (
    settings.BASE_DIR / "docs" / "screenshot-course.png"
    if os.environ.get("UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "aiprof-screenshot-course.png"
)


@pytest.fixture(scope="module", autouse=True)
def _allow_orm_beside_playwright():
    """For this module only (a process-wide setting would leak into other tests)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        yield


@pytest.fixture(scope="module")
def browser(_allow_orm_beside_playwright):
    with playwright_sync.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def demo(transactional_db, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return demo_seed()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def log_in(page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/login/")
    expect(page.get_by_role("main")).to_have_count(1)
    # Labelled inputs: found by their visible label, as a screen reader would announce them.
    page.get_by_label("Username").click()
    page.keyboard.type(username)
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
    page.keyboard.type("demo")
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{base_url}/")


def test_professor_logs_in_opens_cs101_and_logs_out(page, live_server, demo):
    stylesheet = {}
    page.on(
        "response",
        lambda r: stylesheet.setdefault("status", r.status) if r.url.endswith("/css/app.css") else None,
    )

    log_in(page, live_server.url, "professor")

    assert stylesheet.get("status") == 200
    # The stylesheet applies: the header has the brand colour, the font is the system stack.
    header_bg = page.locator(".site-header").evaluate("el => getComputedStyle(el).backgroundColor")
    assert header_bg == "rgb(55, 48, 163)"
    assert "system-ui" in page.evaluate("getComputedStyle(document.body).fontFamily")
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    expect(page.get_by_text("Demo University").first).to_be_visible()

    table = page.get_by_role("table")
    expect(table.get_by_role("link", name="CS101")).to_be_visible()
    table.get_by_role("link", name="Introduction to Programming").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Introduction to Programming")
    students = page.locator("#students")
    expect(students.get_by_role("heading", name="Students")).to_be_visible()
    expect(students.get_by_role("row")).to_have_count(11)  # header + 10 students
    expect(students).to_contain_text("student1")
    documents = page.locator("#documents")
    expect(documents).to_contain_text("CS101 course notes")
    expect(documents.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")  # seeded notes are ingested
    expect(documents).to_contain_text("Ready")
    expect(page.get_by_role("main")).to_have_count(1)

    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 10_000  # a rendered page, not a blank one

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{live_server.url}/login/")
    page.goto(f"{live_server.url}/")
    expect(page).to_have_url(f"{live_server.url}/login/?next=/")


def test_student_sees_cs101_without_the_roster(page, live_server, demo):
    log_in(page, live_server.url, "student1")

    page.get_by_role("link", name="Introduction to Programming").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Introduction to Programming")
    expect(page.locator("#documents")).to_contain_text("CS101 course notes")
    expect(page.get_by_role("heading", name="Students")).to_have_count(0)
    expect(page.get_by_text("student2", exact=True)).to_have_count(0)
    expect(page.get_by_role("heading", name="Your practice conversations")).to_be_visible()


def test_skip_link_moves_focus_to_main(page, live_server, demo):
    log_in(page, live_server.url, "professor")

    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to main content")
    expect(skip).to_be_focused()
    page.keyboard.press("Enter")

    assert page.evaluate("location.hash") == "#main"
