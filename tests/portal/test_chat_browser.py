"""The practice chat in a real browser: Debian's Chromium driven by Playwright against a real
Daphne serving HTTP and WebSockets.

pytest-django's `live_server` is a WSGI server (no WebSockets), and Channels cannot serve an
in-memory test database from another process, so this module runs `tutor_project.asgi` in Daphne
(tests.sessions.conftest.daphne_servers) on a scratch SQLite file seeded with `manage.py
seed_demo` (demo_seed()). No API key and no broker: the offline tutor answers, from the CS101
notes, with a citation and the "Offline tutor" badge. Chromium flags as in test_browser.py.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from django.conf import settings

from tests.portal.browser_support import chromium, demo_server
from tests.portal.test_browser import log_in

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

pytestmark = [pytest.mark.browser]

SCREENSHOT = (
    settings.BASE_DIR / "docs" / "screenshot-chat.png"
    if os.environ.get("UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "aiprof-screenshot-chat.png"
)
QUESTION = "How does a for loop know when to stop?"


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    with demo_server(tmp_path_factory.mktemp("chat-browser")) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium(playwright_sync) as browser:
        yield browser


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.js_errors = errors
    yield page
    context.close()


def open_new_socratic_conversation(page, base_url: str) -> None:
    log_in(page, base_url, "student1")
    page.get_by_role("link", name="Introduction to Programming").click()
    page.get_by_role("link", name="Practise with the tutor").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Practise with")
    page.get_by_role("button", name="New Socratic conversation").click()
    expect(page.locator("#chat-status")).to_have_text("Connected")


def send(page, text: str) -> None:
    box = page.get_by_role("textbox", name="Message Professor Ada")
    box.click()
    page.keyboard.type(text)
    page.keyboard.press("Enter")  # Enter sends; Shift+Enter would add a line


def test_student_asks_the_offline_tutor_and_the_reply_streams_and_persists(page, server_url):
    open_new_socratic_conversation(page, server_url)
    # Record what streams: the tutor bubble's text over time, to tell streaming from a one-shot.
    page.evaluate("""() => {
        window.__seen = [];
        new MutationObserver(() => {
          const bubble = document.querySelector('.chat-message-tutor .bubble-body');
          if (bubble) window.__seen.push(bubble.textContent);
        }).observe(document.getElementById('transcript'), {subtree: true, childList: true, characterData: true});
    }""")

    send(page, QUESTION)

    transcript = page.locator("#transcript")
    student = transcript.locator(".chat-message-student")
    expect(student).to_have_count(1)
    expect(student).to_contain_text(QUESTION)
    expect(page.get_by_role("textbox", name="Message Professor Ada")).to_have_value("")  # accepted: the composer is cleared

    tutor = transcript.locator(".chat-message-tutor")
    expect(tutor).to_have_count(1)
    expect(tutor).to_have_attribute("data-status", "complete", timeout=30_000)
    expect(tutor.locator(".bubble-author")).to_have_text("Professor Ada")
    expect(tutor.locator(".badge-offline")).to_have_text("Offline tutor")
    # The final reply quotes the course notes and cites them, as a link to the document.
    citation = tutor.locator(".citation a").first
    expect(citation).to_contain_text("CS101 course notes")
    expect(citation).to_have_attribute("target", "_blank")
    assert "/documents/" in citation.get_attribute("href")
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()
    expect(page.get_by_role("button", name="Send")).to_be_disabled()  # nothing to send

    seen = [text for text in page.evaluate("window.__seen") if text.strip()]
    final_text = tutor.locator(".bubble-body").inner_text()
    assert len(set(seen)) >= 2, "the reply should arrive in several pieces"
    assert final_text.strip()

    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 10_000

    # Persisted: a reload renders both messages from the database, then the socket reconnects.
    page.reload()
    expect(page.locator("#chat-status")).to_have_text("Connected")
    expect(transcript.locator(".chat-message")).to_have_count(2)
    expect(transcript.locator(".chat-message-student")).to_contain_text(QUESTION)
    expect(transcript.locator(".chat-message-tutor .citation a").first).to_contain_text("CS101 course notes")
    expect(transcript.locator(".chat-message-tutor").locator(".badge-offline")).to_have_text("Offline tutor")
    assert page.js_errors == []


def test_a_script_sent_as_a_message_is_shown_as_text(page, server_url):
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    open_new_socratic_conversation(page, server_url)
    payload = "<script>alert('x')</script><img src=x onerror=alert('y')> what is a loop?"

    send(page, payload)

    student = page.locator("#transcript .chat-message-student")
    expect(student).to_contain_text("<script>alert('x')</script>")
    expect(page.locator("#transcript .chat-message-tutor")).to_have_attribute("data-status", "complete", timeout=30_000)
    assert student.locator("script, img").count() == 0

    page.reload()  # and the server-rendered copy is escaped as well
    expect(page.locator("#transcript .chat-message-student")).to_contain_text("<img src=x onerror=alert('y')>")
    assert page.locator("#transcript script, #transcript img").count() == 0
    assert dialogs == []
    assert page.js_errors == []


def test_practice_list_groups_conversations_by_mode(page, server_url):
    open_new_socratic_conversation(page, server_url)
    send(page, "What is a variable?")
    expect(page.locator("#transcript .chat-message-tutor")).to_have_attribute("data-status", "complete", timeout=30_000)

    page.get_by_role("navigation", name="Breadcrumb").get_by_role("link", name="Practice").click()

    socratic = page.get_by_role("region", name="Socratic conversations")
    expect(socratic.get_by_role("listitem").first).to_contain_text("What is a variable?")
    expect(page.get_by_role("region", name="Q&A conversations")).to_contain_text("No Q&A conversations yet.")
    assert page.js_errors == []


def test_professor_sees_the_tutor_status_card(page, server_url):
    log_in(page, server_url, "professor")
    page.get_by_role("table").get_by_role("link", name="Introduction to Programming").click()

    card = page.locator("#tutor-status")
    expect(card.get_by_role("heading", name="Tutor status")).to_be_visible()
    # Loaded by htmx after the page: no API key here, so only the offline tutor can answer.
    expect(card).to_contain_text("Offline tutor only")
    expect(card.get_by_role("listitem").filter(has_text="offline-socratic")).to_contain_text("Ready")
    expect(card.get_by_role("listitem").filter(has_text="gpt-4o-mini")).to_contain_text("Not configured")
    expect(card.locator("[data-htmx-failed]")).to_be_hidden()
    assert page.js_errors == []
