"""The voice bar on a real page: the practice chat in Debian's Chromium with a fake microphone,
against Daphne on a seeded scratch database (tests/portal/browser_support.py). What the socket
carries is read from Playwright's WebSocket frames; what the server does with the audio is
tests/portal/test_voice_browser.py's business (voice-live)."""

from __future__ import annotations

import json

import pytest

from tests.portal.browser_support import demo_server
from tests.portal.test_browser import CHROMIUM, CHROMIUM_ARGS, log_in

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

pytestmark = [pytest.mark.browser]

MEDIA_ARGS = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    with demo_server(tmp_path_factory.mktemp("voice-pages")) as url:
        yield url


@pytest.fixture
def page():
    with playwright_sync.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + MEDIA_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
        page = context.new_page()
        page.set_default_timeout(15_000)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.js_errors = errors
        page.frames_sent = []

        def watch(ws) -> None:
            ws.on("framesent", lambda payload: page.frames_sent.append(payload))

        page.on("websocket", watch)
        yield page
        browser.close()


def test_the_practice_page_microphone_works_from_the_keyboard_and_sends_pcm_frames(page, server_url):
    log_in(page, server_url, "student1")
    page.get_by_role("link", name="Introduction to Programming").click()
    page.get_by_role("link", name="Practise with the tutor").click()
    page.get_by_role("button", name="New Socratic conversation").click()
    expect(page.locator("#chat-status")).to_have_text("Connected")

    speech = page.get_by_label("Replies aloud")
    speech.select_option("server")
    mic = page.get_by_role("button", name="Start microphone")
    mic.focus()
    page.keyboard.press("Enter")
    for _ in range(50):  # frames flow within a moment of the press
        if any(isinstance(f, bytes) for f in page.frames_sent):
            break
        page.wait_for_timeout(100)
    status = page.locator("[data-voice-status]").first.text_content() or ""
    if "cannot take speech" in status:
        # A server without audio on this route (binary_not_supported): the mic turns itself off.
        expect(page.get_by_role("button", name="Start microphone")).to_be_visible()
    else:
        expect(page.get_by_role("button", name="Stop microphone")).to_be_visible()
        expect(page.get_by_role("button", name="Mute")).to_be_visible()

    binary = [f for f in page.frames_sent if isinstance(f, bytes)]
    texts = [json.loads(f) for f in page.frames_sent if isinstance(f, str)]
    assert binary and {len(f) for f in binary} == {640}  # 20 ms of PCM16 16 kHz per message
    assert {"type": "voice.config", "data": {"tts": "server"}} in texts
    assert page.js_errors == []
