"""The confusion radar in a real browser: a student's confused line appears on the professor's
monitor (topic bar, alert with a link to the line), "Clarify for everyone" tells the student's
room, the radar shows the topic clarified, and a reload renders it all from the server.

Same setup as test_session_browser.py: Debian's Chromium, a real Daphne, the seeded demo, no
broker (the radar's task runs in process, after the line commits).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest

from tests.portal.browser_support import chromium, demo_server
from tests.portal.test_browser import log_in
from tests.portal.test_session_browser import build_and_start_session

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

pytestmark = [pytest.mark.browser]

CONFUSED = "I'm confused about while loops"
CLARIFY = "A while loop checks its condition before every pass."


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    with demo_server(tmp_path_factory.mktemp("radar-browser"), ROOM_TUTOR_DEBOUNCE_MS="0") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium(playwright_sync) as browser:
        yield browser


def _page(browser, width: int, height: int):
    context = browser.new_context(viewport={"width": width, "height": height}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    return context, page, errors


def test_a_confused_line_reaches_the_radar_and_the_professor_clarifies_for_everyone(browser, server_url):
    monitor_context, monitor, monitor_errors = _page(browser, 1440, 1000)
    student_context, student, student_errors = _page(browser, 1280, 900)
    build_and_start_session(monitor, server_url)
    radar = monitor.get_by_role("region", name="Confusion radar")
    expect(radar).to_contain_text("No signs of confusion yet.")

    log_in(student, server_url, "student1")
    student.get_by_role("link", name=re.compile(r"^Join Room \d")).click()
    expect(student.locator("#room-socket")).to_have_text("Connected")
    room_id = int(re.search(r"/rooms/(\d+)/$", student.url).group(1))
    box = student.get_by_role("textbox", name=re.compile("Message the room"))
    box.fill(CONFUSED)
    box.press("Enter")

    # The radar: the topic with its bar and room chip, the alert with the phrase and its line.
    topic = radar.get_by_role("list", name="Topics, most signals first").get_by_role("listitem").filter(
        has=monitor.get_by_role("heading", name="loop")
    )
    expect(topic.locator("[data-radar-count]")).to_have_text("1 signal")
    expect(topic.locator(".radar-rooms .chip")).to_have_text(re.compile(r"^Room \d · 1$"))
    alerts = radar.get_by_role("list", name="Latest confusion alerts, newest first")
    expect(alerts.get_by_role("listitem")).to_have_count(1)
    expect(alerts).to_contain_text("“I'm confused”")
    expect(alerts.locator(".radar-signal")).to_have_text("(said so)")  # the signal's label, not its code
    link = alerts.get_by_role("link", name=re.compile("See the line"))
    expect(link).to_have_attribute("href", re.compile(rf"^/rooms/{room_id}/#seq-\d+$"))

    # Clarify for everyone, with the professor's words.
    topic.get_by_text("Clarify for everyone").click()
    topic.get_by_label("Message to every room (optional)").fill(CLARIFY)
    topic.get_by_role("button", name="Send to every room and tutor").click()
    expect(monitor.locator("#console-status")).to_have_text("Every tutor will clarify loop; the rooms were told.")
    broadcast = student.locator("#room-transcript .live-line-broadcast")
    expect(broadcast).to_contain_text(CLARIFY)
    expect(topic.locator("[data-radar-clarified]")).to_contain_text("Clarified by")
    expect(monitor.locator("[data-hint-state]")).to_have_text("A hint is active.")
    radar.screenshot(path=str(Path(tempfile.gettempdir()) / "aiprof-screenshot-radar.png"))

    # A reload renders the radar from the server; the link lands on the student's line.
    monitor.reload()
    expect(monitor.locator("#monitor-socket")).to_have_text("Live")
    expect(radar.locator('[data-topic="loop"] [data-radar-clarified]')).to_contain_text("Clarified by")
    expect(alerts.get_by_role("listitem")).to_have_count(1)
    alerts.get_by_role("link", name=re.compile("See the line")).click()
    expect(monitor).to_have_url(re.compile(rf"/rooms/{room_id}/#seq-\d+$"))
    seq = monitor.url.rsplit("-", 1)[1]
    expect(monitor.locator(f"#seq-{seq}")).to_contain_text(CONFUSED)

    assert monitor_errors == [] and student_errors == []
    monitor_context.close()
    student_context.close()
