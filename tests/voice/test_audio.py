"""Audio frames: malformed and oversized frames are refused with a code; the budget slides."""

from __future__ import annotations

import io
import wave

import pytest

from tests.voice.audio_support import frames, silence, speak
from voice.audio import AudioBudget, AudioError, frame_check, pcm_to_wav


def test_a_pcm16_frame_passes_unchanged():
    frame = frames(speak("hello"))[10]
    assert frame_check(frame) == frame
    assert len(frame) == 640


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "audio_malformed"),
        (b"\x00\x01\x02", "audio_malformed"),
        ("text, not bytes", "audio_malformed"),
        (bytes(8 * 1024 + 2), "audio_frame_too_large"),
    ],
)
def test_bad_frames_raise_audio_error_with_a_code(data, code):
    with pytest.raises(AudioError) as caught:
        frame_check(data)
    assert caught.value.code == code
    assert caught.value.message


def test_frame_size_limit_follows_the_setting(settings):
    settings.WS_MAX_BINARY_FRAME_BYTES = 640
    assert frame_check(bytes(640))
    with pytest.raises(AudioError, match="at most 640"):
        frame_check(bytes(642))


def test_budget_refuses_audio_past_the_limit_and_frees_it_after_a_minute():
    now = [0.0]
    budget = AudioBudget(seconds_per_minute=2, clock=lambda: now[0])
    assert all(budget.take(20) for _ in range(100))  # 2 s
    assert not budget.take(20)
    now[0] = 30.0
    assert not budget.take(20)  # still inside the window
    now[0] = 60.0
    assert budget.take(20)
    assert budget.used_ms() == 20


def test_budget_defaults_to_the_setting(settings):
    settings.WS_MAX_AUDIO_SECONDS_PER_MINUTE = 1
    budget = AudioBudget(clock=lambda: 0.0)
    assert budget.take(1000)
    assert not budget.take(1)


def test_pcm_to_wav_is_a_16khz_mono_pcm16_wav():
    pcm = silence(100)
    with wave.open(io.BytesIO(pcm_to_wav(pcm))) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16_000)
        assert w.readframes(w.getnframes()) == pcm
