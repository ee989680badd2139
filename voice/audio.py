"""Checks on incoming audio frames, the per-connection audio budget, and WAV packing.

Audio is PCM16 little-endian mono at 16 kHz (DESIGN.md, Real-time). A binary WebSocket frame is
checked with `frame_check` before anything else looks at it; `AudioBudget` caps the seconds of
audio a connection may send per sliding minute (settings.WS_MAX_AUDIO_SECONDS_PER_MINUTE).
"""

from __future__ import annotations

import io
import time
import wave
from collections import deque
from collections.abc import Callable

from django.conf import settings

from voice.providers.base import BYTES_PER_MS, SAMPLE_RATE, SAMPLE_WIDTH


class AudioError(Exception):
    """A frame the server refuses; `code` goes to the client as a WebSocket `error`."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def frame_check(data: bytes) -> bytes:
    """`data` if it is a plausible PCM16 LE mono frame, else AudioError
    (`audio_malformed`: empty, odd length or not bytes; `audio_frame_too_large`)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise AudioError("audio_malformed", "audio frames must be binary PCM16 LE mono 16 kHz")
    size = len(data)
    if size == 0:
        raise AudioError("audio_malformed", "empty audio frame")
    limit = settings.WS_MAX_BINARY_FRAME_BYTES
    if size > limit:
        raise AudioError("audio_frame_too_large", f"audio frame of {size} bytes, at most {limit} allowed")
    if size % SAMPLE_WIDTH:
        raise AudioError("audio_malformed", f"audio frame of {size} bytes: PCM16 frames have an even length")
    return bytes(data)


class AudioBudget:
    """At most `seconds_per_minute` seconds of audio in any sliding 60 s window."""

    WINDOW_SECONDS = 60.0

    def __init__(self, seconds_per_minute: float | None = None, clock: Callable[[], float] = time.monotonic):
        if seconds_per_minute is None:
            seconds_per_minute = settings.WS_MAX_AUDIO_SECONDS_PER_MINUTE
        self.limit_ms = int(seconds_per_minute * 1000)
        self._clock = clock
        self._taken: deque[tuple[float, int]] = deque()  # (when, ms)
        self._total_ms = 0

    def used_ms(self) -> int:
        cutoff = self._clock() - self.WINDOW_SECONDS
        while self._taken and self._taken[0][0] <= cutoff:
            self._total_ms -= self._taken.popleft()[1]
        return self._total_ms

    def take(self, ms: int) -> bool:
        """Count `ms` of audio now; False (and nothing counted) if it would pass the limit."""
        if self.limit_ms <= 0:
            return True  # 0 disables the budget
        if self.used_ms() + ms > self.limit_ms:
            return False
        self._taken.append((self._clock(), ms))
        self._total_ms += ms
        return True


def pcm_to_wav(pcm: bytes) -> bytes:
    """PCM16 LE mono 16 kHz wrapped in a WAV container (for upload-style engines, debugging)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(SAMPLE_WIDTH)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm[: len(pcm) - len(pcm) % SAMPLE_WIDTH])
    return buffer.getvalue()


__all__ = ["BYTES_PER_MS", "AudioBudget", "AudioError", "frame_check", "pcm_to_wav"]
