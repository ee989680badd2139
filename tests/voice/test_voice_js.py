"""static/js/pcm-worklet.js and static/js/voice.js: the downsampler under Node; capture and
playback in Debian's Chromium (fake microphone; static/ served by a tiny HTTP server on
http://localhost, a secure context as AudioWorklet and getUserMedia require)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parents[2] / "static"
NODE = shutil.which("node")
CHROMIUM = "/usr/bin/chromium"


def node(script: str) -> dict:
    completed = subprocess.run(
        [NODE, "--no-warnings", "--input-type=module", "-e", script, (STATIC / "js" / "pcm-worklet.js").as_uri()],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


DOWNSAMPLE = """
const { Downsampler } = await import(process.argv[1]);
function run(rate, freq, seconds, block = 128) {
  const d = new Downsampler(rate);
  const frames = [];
  let t = 0;
  while (t < rate * seconds) {
    const input = Float32Array.from({ length: block }, (_, i) => 0.5 * Math.sin(2 * Math.PI * freq * (t + i) / rate));
    frames.push(...d.push(input));
    t += block;
  }
  const samples = frames.flatMap((f) => Array.from(f.pcm));
  return { frames: frames.length, sizes: [...new Set(frames.map((f) => f.pcm.length))],
           level: frames[10].level, peak: Math.max(...samples.slice(3200)) };
}
console.log(JSON.stringify({
  voice48: run(48000, 440, 1), voice44: run(44100, 440, 1), voice16: run(16000, 440, 1),
  alias48: run(48000, 12000, 1),
}));
"""


@pytest.mark.skipif(not NODE, reason="needs Node")
def test_the_worklet_makes_20_ms_frames_of_16_khz_pcm16_from_any_rate():
    result = node(DOWNSAMPLE)
    for key in ("voice48", "voice44", "voice16"):
        assert result[key]["sizes"] == [320], key  # 20 ms at 16 kHz
        assert result[key]["frames"] in (49, 50, 51), key  # one second
        assert 0.33 < result[key]["level"] < 0.37, key  # a 0.5 sine's RMS survives (0.354)
        assert 15000 < result[key]["peak"] < 17000, key  # as PCM16 (0.5 * 32767)


@pytest.mark.skipif(not NODE, reason="needs Node")
def test_the_worklet_filters_what_16_khz_cannot_carry():
    # 12 kHz would fold back to 4 kHz, right in the speech band: the low-pass takes it out.
    assert node(DOWNSAMPLE)["alias48"]["level"] < 0.05


# --- In Chromium -------------------------------------------------------------------------------------

playwright_sync = pytest.importorskip("playwright.sync_api")

BROWSER_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]


class _Static(SimpleHTTPRequestHandler):
    """/static/... from the repository's static/; / is an empty page."""

    def translate_path(self, path: str) -> str:
        path = path.split("?")[0]
        if path.startswith("/static/"):
            return str(STATIC / path.removeprefix("/static/"))
        return str(STATIC / "__nothing__")

    def do_GET(self) -> None:
        if self.path == "/":
            body = b"<!doctype html><html lang='en'><title>voice</title></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def guess_type(self, path) -> str:
        return "text/javascript" if str(path).endswith(".js") else super().guess_type(path)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def page():
    if not os.path.exists(CHROMIUM):
        pytest.skip("/usr/bin/chromium is missing")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Static)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    origin = f"http://localhost:{server.server_address[1]}"  # localhost: a secure context
    try:
        with playwright_sync.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS, headless=True)
            context = browser.new_context()
            context.grant_permissions(["microphone"], origin=origin)
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{origin}/")
            page.js_errors = errors
            yield page
            browser.close()
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.browser
def test_the_microphone_sends_20_ms_pcm_frames_and_audio_end_when_muted(page):
    result = page.evaluate(
        """async () => {
          const { VoiceIO } = await import("/static/js/voice.js");
          const sent = [], binary = [];
          const socket = { send: (type, data) => sent.push(type), sendBinary: (b) => binary.push(b) };
          const levels = [];
          const voice = new VoiceIO({ socket, onLevel: (v) => levels.push(v) });
          await voice.start();
          await new Promise((resolve) => setTimeout(resolve, 1000));
          voice.setMuted(true);
          const whileMuted = binary.length;
          await new Promise((resolve) => setTimeout(resolve, 200));
          const afterMute = binary.length;
          voice.setMuted(false);
          await new Promise((resolve) => setTimeout(resolve, 200));
          voice.stop();
          let loud = 0;
          for (const frame of binary) for (const s of new Int16Array(frame)) loud = Math.max(loud, Math.abs(s));
          return {
            frames: afterMute, grewAfterUnmute: binary.length > afterMute, mutedStill: afterMute === whileMuted,
            sizes: [...new Set(binary.map((b) => b.byteLength))], sent,
            loud, maxLevel: Math.max(...levels),
          };
        }"""
    )
    assert result["sizes"] == [640]  # 320 samples of PCM16
    assert 25 <= result["frames"] <= 75  # about a second of 20 ms frames
    assert result["mutedStill"] and result["grewAfterUnmute"]
    assert result["sent"] == ["audio.end", "audio.end"]  # mute, then stop
    assert result["loud"] > 500 and result["maxLevel"] > 0  # the fake device beeps once a second
    assert page.js_errors == []


@pytest.mark.browser
def test_server_speech_plays_gaplessly_and_is_acknowledged_when_played(page):
    result = page.evaluate(
        """async () => {
          const { SpeechPlayer } = await import("/static/js/voice.js");
          const done = [];
          const player = new SpeechPlayer({ onDone: (id) => done.push(id) });
          const context = player.unlock();
          await context.resume();
          const pcm = (seconds, rate) => {
            const samples = new Int16Array(Math.round(seconds * rate));
            for (let i = 0; i < samples.length; i += 1) samples[i] = 8000 * Math.sin(i / 10);
            return samples.buffer;
          };
          player.audio({ message_id: 7, sample_rate: 22050 });
          const start = context.currentTime;
          player.binary(pcm(0.2, 22050));
          player.binary(pcm(0.2, 22050));
          const queued = player.nextTime - start;
          player.audio({ message_id: 7, sample_rate: 24000 });
          player.binary(pcm(0.1, 24000));
          const queuedAfter = player.nextTime - start;
          player.end({ message_id: 7 });
          const early = done.length;
          await new Promise((resolve) => { const t = setInterval(() => { if (done.length) { clearInterval(t); resolve(); } }, 20); });
          return { queued, queuedAfter, early, done, played: context.currentTime - start };
        }"""
    )
    assert 0.39 < result["queued"] < 0.5  # 2 x 0.2 s back to back (plus the start slack)
    assert 0.49 < result["queuedAfter"] < 0.6  # another rate, same timeline
    assert result["early"] == 0 and result["done"] == [7]
    assert result["played"] >= 0.5  # tts.done only once it has played


@pytest.mark.browser
def test_tts_stop_silences_at_once_and_drops_late_frames(page):
    result = page.evaluate(
        """async () => {
          const { VoiceIO } = await import("/static/js/voice.js");
          const sent = [];
          const socket = { send: (type, data) => sent.push([type, data]), sendBinary: () => {} };
          const voice = new VoiceIO({ socket });
          await voice.player.unlock().resume();
          voice.handleMessage({ type: "tts.audio", data: { message_id: 3, sentence: 1, sample_rate: 16000 } });
          voice.handleBinary(new Int16Array(16000 * 5).fill(3000).buffer);  // 5 s
          const playing = voice.player.sources.size;
          voice.handleMessage({ type: "tts.stop", data: { reason: "barge_in" } });
          voice.handleBinary(new Int16Array(1600).fill(3000).buffer);  // in flight: dropped
          const after = voice.player.sources.size;
          voice.handleMessage({ type: "tts.end", data: { message_id: 4, sentences: 0 } });
          const handled = voice.handleMessage({ type: "tutor.delta", data: {} });
          return { playing, after, sent, handled };
        }"""
    )
    assert result["playing"] == 1 and result["after"] == 0
    assert result["sent"] == [["tts.done", {"message_id": 4}]]  # nothing left to play
    assert result["handled"] is False  # other events stay the page's


@pytest.mark.browser
def test_the_lecture_mic_opens_its_own_socket_on_start_and_closes_it_on_stop(page):
    result = page.evaluate(
        """async () => {
          document.body.innerHTML = `<div id="lecture-mic"><div data-voice>
            <button type="button" data-voice-mic data-start-label="Lecture mic" data-stop-label="Stop lecture mic"><span data-label>Lecture mic</span></button>
            <button type="button" data-voice-mute hidden>Mute</button>
            <meter data-voice-level min="0" max="1" value="0" hidden></meter>
            <p data-voice-status role="status"></p></div></div>`;
          const { initLectureMic } = await import("/static/js/voice.js");
          const log = [];
          const connect = (url) => {
            log.push(["connect", url]);
            return { send: (type) => log.push(["send", type]), sendBinary: () => log.push(["binary"]), close: () => log.push(["close"]) };
          };
          const voice = initLectureMic(document.getElementById("lecture-mic"), { sessionId: 5, connect });
          const mic = document.querySelector("[data-voice-mic]");
          mic.click();
          const wait = (test) => new Promise((resolve) => { const t = setInterval(() => { if (test()) { clearInterval(t); resolve(); } }, 20); });
          await wait(() => log.some((e) => e[0] === "binary"));
          const label = mic.textContent.trim();
          mic.click();
          await wait(() => log.some((e) => e[0] === "close"));
          return { label, after: mic.textContent.trim(), kinds: [...new Set(log.map((e) => e[0]))], first: log[0], last: log.slice(-2), listening: voice.listening };
        }"""
    )
    assert result["first"] == ["connect", "/ws/sessions/5/lecture/"]
    assert result["label"] == "Stop lecture mic" and result["after"] == "Lecture mic"
    assert result["last"] == [["send", "audio.end"], ["close"]]
    assert result["listening"] is False
