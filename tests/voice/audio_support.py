"""Real speech for tests and benches: espeak-ng's voice as PCM16 LE mono 16 kHz, and helpers.

    from tests.voice.audio_support import frames, silence, speak
    pcm = silence(300) + speak("what is recursion") + silence(1000)
    for frame in frames(pcm):          # 20 ms frames, 640 bytes each (the last may be shorter)
        await voice_input.feed(frame)

`speak` runs `espeak-ng --stdout` and resamples its 22,050 Hz WAV to 16 kHz with sox (numpy's
linear interpolation when sox is missing); results are cached per (text, voice, speed) and repeatable (sox without dither).
"""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
import wave

import numpy as np

SAMPLE_RATE = 16_000
BYTES_PER_MS = SAMPLE_RATE * 2 // 1000  # 32


@functools.lru_cache(maxsize=256)
def speak(text: str, *, voice: str = "en-us", speed: int = 150) -> bytes:
    """`text` spoken by espeak-ng: PCM16 LE mono 16 kHz bytes."""
    wav = subprocess.run(
        ["/usr/bin/espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text],
        check=True, capture_output=True, timeout=30,
    ).stdout
    sox = shutil.which("sox")
    if sox:
        return subprocess.run(
            [sox, "-q", "-R", "-D", "-t", "wav", "-", "-t", "raw", "-r", str(SAMPLE_RATE), "-e", "signed",
             "-b", "16", "-c", "1", "-L", "-"],
            input=wav, check=True, capture_output=True, timeout=30,
        ).stdout
    with wave.open(io.BytesIO(wav)) as w:
        rate = w.getframerate()
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
    return resample(samples, rate)


def resample(samples: np.ndarray, rate: int) -> bytes:
    """Linear-interpolation resampling of float samples at `rate` to PCM16 16 kHz."""
    if rate == SAMPLE_RATE:
        out = samples
    else:
        n = round(len(samples) * SAMPLE_RATE / rate)
        out = np.interp(np.arange(n) * rate / SAMPLE_RATE, np.arange(len(samples)), samples)
    return np.clip(np.round(out), -32768, 32767).astype("<i2").tobytes()


def silence(ms: int) -> bytes:
    """`ms` milliseconds of digital silence."""
    return bytes(ms * BYTES_PER_MS)


def noise(ms: int, *, amplitude: int = 300, seed: int = 0) -> bytes:
    """`ms` milliseconds of low white noise (a quiet room, a fan)."""
    rng = np.random.default_rng(seed)
    return rng.normal(0, amplitude, ms * SAMPLE_RATE // 1000).clip(-32768, 32767).astype("<i2").tobytes()


def frames(pcm: bytes, ms: int = 20) -> list[bytes]:
    """`pcm` cut into `ms`-millisecond frames (the last one may be shorter)."""
    size = ms * BYTES_PER_MS
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]
