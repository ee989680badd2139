"""VAD on real speech: utterances split on silence, pre-roll kept, noise and clicks dropped."""

from __future__ import annotations

import numpy as np
import pytest

from tests.voice.audio_support import frames, noise, silence, speak
from voice.vad import Segmenter, SpeechAudio, SpeechEnd, SpeechStart, is_backchannel


def run(segmenter: Segmenter, pcm: bytes, *, frame_ms: int = 20, flush: bool = True) -> list:
    events = []
    for frame in frames(pcm, ms=frame_ms):
        events += segmenter.push(frame)
    if flush:
        events += segmenter.flush()
    return events


def utterances(events: list) -> list[tuple[SpeechStart, bytes, SpeechEnd]]:
    """Events grouped per utterance, checking they come in order: start, audio..., end."""
    out, start, audio = [], None, b""
    for event in events:
        if isinstance(event, SpeechStart):
            assert start is None
            start, audio = event, b""
        elif isinstance(event, SpeechAudio):
            assert start is not None
            audio += event.pcm
        else:
            assert start is not None
            out.append((start, audio, event))
            start = None
    assert start is None
    return out


def test_two_sentences_one_second_apart_are_two_utterances():
    first, second = speak("what is recursion"), speak("explain binary search")
    pcm = silence(500) + first + silence(1000) + second + silence(1000)
    found = utterances(run(Segmenter(), pcm))

    assert len(found) == 2
    (s1, a1, e1), (s2, _a2, e2) = found
    first_ms, second_start = len(first) // 32, 500 + len(first) // 32 + 1000
    assert s1.start_ms <= 500 - 100  # pre-roll before the first voiced frames
    assert 500 + first_ms - 400 <= e1.end_ms <= 500 + first_ms + 100  # espeak ends with ~250 ms of quiet
    assert s2.start_ms <= second_start and s2.start_ms >= e1.end_ms
    assert e1.voiced_ms >= first_ms // 2 and e2.voiced_ms >= len(second) // 32 // 2
    assert len(a1) >= len(first)  # pre-roll + the speech + the silence that ended it


def test_odd_sized_input_is_buffered_into_frames_with_the_same_result():
    pcm = silence(300) + speak("what is recursion") + silence(900)
    by_20 = utterances(run(Segmenter(), pcm))
    by_odd = utterances(run(Segmenter(), pcm, frame_ms=7))
    assert [(s.start_ms, e.end_ms, e.voiced_ms) for s, _, e in by_20] == [
        (s.start_ms, e.end_ms, e.voiced_ms) for s, _, e in by_odd
    ]


def test_silence_and_quiet_noise_yield_no_utterance():
    assert run(Segmenter(), silence(3000)) == []
    assert run(Segmenter(), noise(3000, amplitude=30)) == []


def test_end_of_turn_follows_the_setting(settings):
    settings.VOICE_END_OF_TURN_MS = 1500
    pcm = silence(300) + speak("what is recursion") + silence(1000) + speak("binary search") + silence(1600)
    assert len(utterances(run(Segmenter(), pcm, flush=False))) == 1  # 1 s is a pause, not a turn


def test_flush_ends_the_utterance_now():
    segmenter = Segmenter()
    events = run(segmenter, silence(200) + speak("what is recursion"), flush=False)
    assert not any(isinstance(e, SpeechEnd) for e in events)
    ends = [e for e in segmenter.flush() if isinstance(e, SpeechEnd)]
    assert len(ends) == 1 and ends[0].voiced_ms > 0
    assert segmenter.flush() == []


def click(ms: int = 100) -> bytes:
    """A loud square-wave burst: webrtcvad calls it voiced, it is not speech."""
    samples = np.where(np.arange(ms * 16) % 16 < 8, 20000, -20000).astype("<i2")
    return samples.tobytes()


def test_silero_confirmation_drops_what_is_not_speech_and_keeps_speech():
    loud = silence(300) + click(200) + silence(1000)
    assert utterances(run(Segmenter(confirm=False), loud))  # webrtcvad alone is fooled
    assert run(Segmenter(confirm=True), loud) == []

    pcm = silence(300) + speak("what is recursion") + silence(1000)
    plain = utterances(run(Segmenter(confirm=False), pcm))
    confirmed = utterances(run(Segmenter(confirm=True), pcm))
    assert len(confirmed) == 1
    assert (confirmed[0][0], confirmed[0][1], confirmed[0][2]) == plain[0]  # held, then released whole


@pytest.mark.parametrize(
    "text",
    ["mhm", "Mm.", "uh-huh", "OK", "okay!", "Yeah", "yes", "yep", "right", "sure", "I see",
     "got it", "Cool.", "okay, got it", "yeah yeah", "Oh, I see."],
)
def test_backchannels(text):
    assert is_backchannel(text)


@pytest.mark.parametrize(
    "text",
    ["", "...", "what is recursion", "okay so what is a base case", "yes but why", "no",
     "right right right right", "stop", "I don't see it"],
)
def test_not_backchannels(text):
    assert not is_backchannel(text)
