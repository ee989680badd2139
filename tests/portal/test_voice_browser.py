"""Speaking in a breakout room with a real browser: Debian's Chromium, its fake microphone playing
a WAV that espeak-ng made, the room page's voice bar (static/js/voice.js: capture worklet, 20 ms
PCM16 frames on the room socket), VAD and pocketsphinx on a real Daphne, and the words coming
back as the room's caption and transcript line. Offline: no key, the demo's scope terms are the
recognizer's keywords."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.portal.browser_support import demo_server
from tests.portal.test_browser import CHROMIUM, CHROMIUM_ARGS, log_in
from tests.portal.test_session_browser import build_and_start_session

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("sox")), reason="needs espeak-ng and sox"),
]

SPOKEN = "python for loop range"  # words of the demo course's scope terms


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory) -> str:
    """The sentence at 48 kHz mono, with silence around it (Chromium loops the file)."""
    folder = tmp_path_factory.mktemp("voice-browser")
    raw, wav = folder / "raw.wav", folder / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), SPOKEN], check=True, timeout=30)
    subprocess.run(["sox", str(raw), "-r", "48000", "-c", "1", "-b", "16", str(wav), "pad", "0.8", "2.5"], check=True, timeout=30)
    return str(wav)


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    with demo_server(tmp_path_factory.mktemp("voice-browser-site"), ROOM_TUTOR_DEBOUNCE_MS="0") as url:
        yield url


@pytest.fixture(scope="module")
def browser(speech_wav):
    args = [
        *CHROMIUM_ARGS,
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={speech_wav}",
        "--autoplay-policy=no-user-gesture-required",
    ]
    with playwright_sync.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        yield browser
        browser.close()


def _page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US", permissions=["microphone"])
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.js_errors = errors
    return context, page


def test_a_student_speaks_and_the_room_shows_the_words(browser, server_url):
    professor_context, monitor = _page(browser)
    build_and_start_session(monitor, server_url)

    context, student = _page(browser)
    log_in(student, server_url, "student1")
    student.get_by_role("link", name=re.compile(r"^Join Room \d")).click()
    expect(student).to_have_url(re.compile(r"/rooms/\d+/$"))
    room_id = int(re.search(r"/rooms/(\d+)/$", student.url).group(1))
    expect(student.locator("#room-socket")).to_have_text("Connected")

    student.get_by_role("button", name="Start microphone").click()
    expect(student.get_by_role("button", name="Stop microphone")).to_be_visible()

    line = student.locator("#room-transcript .live-line-student").filter(has_text=re.compile("for loop"))
    expect(line.first).to_be_visible(timeout=30_000)
    expect(student.locator("#captions")).to_contain_text("loop", timeout=30_000)
    # The professor's monitor shows the spoken line in that room's card.
    expect(monitor.locator(f"#room-{room_id} .live-line-student").filter(has_text="for loop").first).to_be_visible(timeout=30_000)

    student.get_by_role("button", name="Stop microphone").click()
    assert student.js_errors == [] and monitor.js_errors == []
    context.close()
    professor_context.close()


def test_the_professors_lecture_mic_fills_the_monitors_lecture_block(browser, server_url):
    context, monitor = _page(browser)
    build_and_start_session(monitor, server_url)
    expect(monitor.locator("[data-lecture-empty]")).to_be_visible()

    monitor.get_by_role("button", name="Lecture mic").click()
    lines = monitor.locator("#lecture-lines li").filter(has_text=re.compile("for loop"))
    expect(lines.first).to_be_visible(timeout=30_000)
    expect(monitor.locator("[data-lecture-empty]")).to_be_hidden()
    monitor.get_by_role("button", name="Stop lecture mic").click()
    assert monitor.js_errors == []
    context.close()
