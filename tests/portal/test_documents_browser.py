"""Course materials in a real browser: the professor uploads two files on the course page (one
readable, one not), watches the readable one become ready, reads the other's reason, and searches
the materials. Debian's Chromium driven by Playwright against `live_server`; ingestion runs in the
background thread of the embedded default, so the page sees it progress."""

from __future__ import annotations

import pytest

from courses.models import CourseDocument
from courses.services import demo_seed
from tests.courses.documents_support import pdf_bytes

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("fast_password_hashing")]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]

PAGES = [
    f"Sorting, part {n}\nSelection sort picks the smallest item and swaps it to the front, page {n}."
    for n in range(1, 30)
] + ["Merge sort\nMerge sort splits the list in halves, sorts each half and merges them back together."]


@pytest.fixture(scope="module", autouse=True)
def _allow_orm_beside_playwright():
    """Playwright's sync API runs an event loop in this thread; the test's ORM calls are sync."""
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
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.fixture
def demo(transactional_db, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.DOCUMENT_INGEST_IN_THREAD = True  # as in `make run`: the upload answers at once
    return demo_seed()


def log_in(page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("demo")
    page.get_by_label("Password").press("Enter")
    expect(page).to_have_url(f"{base_url}/")


def test_professor_uploads_files_and_sees_them_ingested(page, live_server, demo, tmp_path):
    slides = tmp_path / "Sorting slides.pdf"
    slides.write_bytes(pdf_bytes(PAGES))
    broken = tmp_path / "Broken handout.pdf"
    broken.write_bytes(b"%PDF-1.4 this is not really a PDF")
    log_in(page, live_server.url, "professor")
    page.get_by_role("link", name="Introduction to Programming").first.click()
    documents = page.locator("#documents")
    expect(documents.locator("[data-dropzone]")).to_be_visible()

    page.set_input_files("#document-files", [str(slides), str(broken)])

    ready = documents.locator(".document", has_text="Sorting slides")
    expect(ready.locator(".badge")).to_have_text("Ready", timeout=30_000)
    expect(ready.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
    expect(ready).to_contain_text("30 pages")
    failed = documents.locator(".document", has_text="Broken handout")
    expect(failed.locator(".badge")).to_have_text("Failed", timeout=30_000)
    expect(failed).to_contain_text("could not be read")
    assert CourseDocument.objects.get(title="Sorting slides").chunks.count() >= 30

    # The tools survived the section's refreshes: search what the tutor would read.
    page.get_by_label("Search the materials").fill("how does merge sort work?")
    page.get_by_role("button", name="Search").click()
    results = page.locator("#document-search-results")
    expect(results.locator(".search-hit").first).to_contain_text("Sorting slides, p. 30")

    # A file of a type we cannot read is refused in the page, before any upload.
    picture = tmp_path / "diagram.png"
    picture.write_bytes(b"\x89PNG")
    page.set_input_files("#document-files", str(picture))
    expect(page.locator(".upload-item.is-failed", has_text="diagram.png")).to_contain_text("cannot be read")
    assert not CourseDocument.objects.filter(title="diagram").exists()
