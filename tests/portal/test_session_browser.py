"""A live session in a real browser: the professor builds and starts it, watches the monitor,
a student talks in their breakout room, the professor broadcasts, the (offline) tutor answers.

Debian's Chromium driven by Playwright against a real Daphne (HTTP + WebSockets) on a scratch
SQLite file seeded with `manage.py seed_demo`, as in test_chat_browser.py. No API key and no
broker: the offline tutor answers at once (ROOM_TUTOR_DEBOUNCE_MS=0). The monitor's screenshot
goes to docs/screenshot-monitor.png only with UPDATE_SCREENSHOTS=1 (the README's pictures are
refreshed on request, so a test run leaves the work tree clean).
"""

from __future__ import annotations

import os
import re
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
    settings.BASE_DIR / "docs" / "screenshot-monitor.png"
    if os.environ.get("UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "aiprof-screenshot-monitor.png"
)
QUESTION = "How does a for loop know when to stop?"
BROADCAST = "Five minutes left: agree on one answer."


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    with demo_server(tmp_path_factory.mktemp("session-browser"), ROOM_TUTOR_DEBOUNCE_MS="0") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium(playwright_sync) as browser:
        yield browser


def _page(browser, width: int = 1280, height: int = 900):
    context = browser.new_context(viewport={"width": width, "height": height}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.js_errors = errors
    return context, page


@pytest.fixture
def professor_page(browser):
    context, page = _page(browser, 1440, 1000)
    yield page
    context.close()


@pytest.fixture
def student_page(browser):
    context, page = _page(browser)
    yield page
    context.close()


def build_and_start_session(page, base_url: str) -> None:
    """As the professor: course page -> New session -> the form -> session page -> Start."""
    log_in(page, base_url, "professor")
    page.get_by_role("table").get_by_role("link", name="Introduction to Programming").click()
    page.get_by_role("link", name="New session").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("New live session")
    page.get_by_label("Title").fill("Loops lab")
    page.get_by_role("spinbutton", name="Number of rooms").fill("3")
    page.get_by_label("Topics").fill("for loops\nwhile loops\nnested loops")
    page.get_by_role("button", name="Create the session").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Loops lab")
    rooms = page.get_by_role("list", name="Rooms")
    expect(rooms.get_by_role("listitem").filter(has_text="Topic: for loops")).to_have_count(1)
    page.get_by_role("button", name="Start the session").click()

    expect(page).to_have_url(re.compile(r"/sessions/\d+/monitor/$"))
    expect(page.get_by_role("status").filter(has_text="The session is live: 3 rooms, 10 students, 3 tutors ready.")).to_be_visible()
    expect(page.locator("#monitor-socket")).to_have_text("Live")


def test_student_talks_professor_watches_and_broadcasts_tutor_answers(professor_page, student_page, server_url):
    monitor = professor_page
    build_and_start_session(monitor, server_url)
    expect(monitor.locator("#room-grid > li")).to_have_count(3)
    expect(monitor.locator("#degraded-banner")).to_be_hidden()

    # The student finds the live session on their home page and joins their room.
    student = student_page
    log_in(student, server_url, "student1")
    student.get_by_role("link", name=re.compile(r"^Join Room \d")).click()
    expect(student).to_have_url(re.compile(r"/rooms/\d+/$"))
    room_id = int(re.search(r"/rooms/(\d+)/$", student.url).group(1))
    expect(student.locator("#room-socket")).to_have_text("Connected")
    expect(student.get_by_role("heading", level=1)).to_have_text(re.compile(r"Room \d"))

    # The student writes; the line reaches the monitor's card for that room.
    box = student.get_by_role("textbox", name=re.compile("Message the room"))
    box.click()
    student.keyboard.type(QUESTION)
    student.keyboard.press("Enter")
    transcript = student.locator("#room-transcript")
    expect(transcript.locator(".live-line-student")).to_contain_text(QUESTION)
    expect(box).to_have_value("")  # accepted: echoed back as the room's line
    card = monitor.locator(f"#room-{room_id}")
    expect(card.locator(".live-line-student")).to_contain_text(QUESTION)
    expect(card.locator("[data-last-activity]")).not_to_have_text("—")

    # The offline tutor answers the room: in the room page with its badge and sources...
    reply = transcript.locator(".live-line-tutor[data-status='complete']").first
    expect(reply).to_be_visible(timeout=30_000)
    expect(reply.locator(".badge-offline")).to_have_text("Offline tutor")
    expect(reply.locator(".live-line-body")).not_to_be_empty()
    # ...and on the monitor.
    expect(card.locator(".live-line-tutor").first).to_be_visible()

    # The professor broadcasts to every room; the student sees it, marked as the professor's.
    monitor.get_by_label("Message to the rooms").fill(BROADCAST)
    monitor.get_by_role("button", name="Broadcast").click()
    expect(monitor.locator("#console-status")).to_have_text("Sent to all rooms.")
    broadcast = transcript.locator(".live-line-broadcast")
    expect(broadcast).to_contain_text(BROADCAST)
    expect(broadcast.locator(".badge-broadcast")).to_have_text("From the professor")
    expect(monitor.locator("#room-grid .live-line-broadcast")).to_have_count(3)

    # Steering: quiz lock everywhere; the student's mode badge follows.
    monitor.get_by_label("Teaching mode").select_option("quiz_lock")
    monitor.get_by_role("button", name="Switch").click()
    expect(student.locator("[data-room-mode]")).to_have_text("Quiz lock")
    expect(card.locator("[data-room-mode]")).to_have_text("Quiz lock")

    SCREENSHOT.parent.mkdir(exist_ok=True)
    monitor.locator("h1").scroll_into_view_if_needed()
    monitor.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 20_000
    student.screenshot(path=str(Path(tempfile.gettempdir()) / "aiprof-screenshot-room.png"), full_page=True)

    # A reload renders the lines from the database and the socket replays nothing twice.
    monitor.reload()
    expect(monitor.locator("#monitor-socket")).to_have_text("Live")
    expect(card.locator(".live-line-student").filter(has_text=QUESTION)).to_have_count(1)
    expect(card.locator(".live-line-broadcast")).to_have_count(1)

    # Moved to another room from the session page: the student's page follows by itself.
    name = student.locator(".account-name").inner_text()
    monitor.get_by_role("link", name="Rooms and students").click()
    row = monitor.get_by_role("list", name="Rooms").get_by_role("listitem").filter(has_text=name).filter(
        has=monitor.get_by_role("button", name=f"Move {name}")
    )
    target = row.get_by_label(f"Move {name} to")
    target.select_option(index=0)
    new_room_id = int(target.input_value())
    row.get_by_role("button", name=f"Move {name}").click()
    expect(monitor.get_by_role("status").filter(has_text="Moved.")).to_be_visible()
    expect(student).to_have_url(f"{server_url}/rooms/{new_room_id}/")
    expect(student.locator("#room-socket")).to_have_text("Connected")
    expect(student.locator("[data-people]")).to_contain_text(name)

    # The professor ends the session (confirmed); the student's room says so.
    monitor.get_by_role("link", name="Open the monitor").click()
    monitor.once("dialog", lambda dialog: dialog.accept())
    monitor.get_by_role("button", name="End session").click()
    expect(monitor).to_have_url(re.compile(r"/sessions/\d+/$"))
    expect(student.locator("#room-state-ended")).to_be_visible()
    expect(box).to_be_disabled()

    assert monitor.js_errors == []
    assert student.js_errors == []
