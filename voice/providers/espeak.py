"""espeak-ng: the tiny formant voice, the server's last engine before the browser's own.

`espeak-ng --stdout` writes a WAV whose header sizes are placeholders (it streams), so the header
is parsed chunk by chunk and everything after the `data` chunk header is PCM, yielded as it comes.
The text goes through stdin, never the command line (no option injection, no length limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import struct
import time
from collections.abc import AsyncIterator

from voice.providers.base import TtsUnavailable

logger = logging.getLogger(__name__)

DEFAULT_BINARY = "/usr/bin/espeak-ng"
DEFAULT_VOICE = "en-us"
READ_BYTES = 4096


class EspeakEngine:
    """`TtsEngine`: PCM16 mono at 22050 Hz, streamed from an `espeak-ng` subprocess."""

    name = "espeak"
    sample_rate = 22050
    model = "espeak-ng"

    def __init__(self, *, binary: str | None = None, words_per_minute: int = 165):
        self.binary = binary or shutil.which("espeak-ng") or DEFAULT_BINARY
        self.words_per_minute = words_per_minute

    async def synthesize(self, text: str, *, voice: str = "", usage: dict | None = None) -> AsyncIterator[bytes]:
        if not text.strip():
            return
        started = time.monotonic()
        try:
            process = await asyncio.create_subprocess_exec(
                self.binary, "--stdout", "-v", _safe_voice(voice), "-s", str(self.words_per_minute),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:  # missing binary, not executable
            raise TtsUnavailable(f"espeak-ng cannot run ({self.binary}): {exc}") from exc
        outcome, error, first_chunk_ms = "ok", "", 0
        try:
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write(text.encode("utf-8"))
            await process.stdin.drain()
            process.stdin.close()
            await self._read_header(process)
            carry = b""
            while True:
                data = await process.stdout.read(READ_BYTES)
                if not data:
                    break
                data, carry = _even(carry + data)
                if data:
                    if not first_chunk_ms:
                        first_chunk_ms = int((time.monotonic() - started) * 1000)
                    yield data
            code = await process.wait()
            if code != 0 and not first_chunk_ms:
                stderr = (await process.stderr.read()).decode(errors="replace").strip() if process.stderr else ""
                raise TtsUnavailable(f"espeak-ng exited with {code}: {stderr[:200]}")
        except TtsUnavailable as exc:
            outcome, error = "error", str(exc)
            raise
        except (BrokenPipeError, ConnectionResetError) as exc:
            outcome, error = "error", str(exc)
            raise TtsUnavailable(f"espeak-ng closed early: {exc}") from exc
        except (asyncio.CancelledError, GeneratorExit):
            outcome = "cancelled"
            raise
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                with contextlib.suppress(Exception):  # reap it: no zombie per stopped sentence
                    await asyncio.wait_for(process.wait(), 2)
            if usage and outcome != "cancelled":
                from voice.tts import tts_usage_record

                await tts_usage_record(
                    usage=usage, provider=self.name, model=self.model, characters=len(text),
                    latency_ms=first_chunk_ms, outcome=outcome, error=error,
                )

    async def _read_header(self, process: asyncio.subprocess.Process) -> None:
        """Consume the RIFF header up to the `data` chunk's; check the format is what we say."""
        assert process.stdout is not None
        try:
            riff = await process.stdout.readexactly(12)
            if riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
                raise TtsUnavailable("espeak-ng did not write a WAV")
            while True:
                chunk_id, size = struct.unpack("<4sI", await process.stdout.readexactly(8))
                if chunk_id == b"data":
                    return
                body = await process.stdout.readexactly(size if size < 1 << 16 else 0)
                if chunk_id == b"fmt ":
                    audio_format, channels, rate = struct.unpack("<HHI", body[:8])
                    bits = struct.unpack("<H", body[14:16])[0]
                    if (audio_format, channels, rate, bits) != (1, 1, self.sample_rate, 16):
                        raise TtsUnavailable(
                            f"espeak-ng wrote format={audio_format} channels={channels} "
                            f"rate={rate} bits={bits}, expected PCM16 mono {self.sample_rate} Hz"
                        )
        except asyncio.IncompleteReadError as exc:
            code = await process.wait()
            stderr = (await process.stderr.read()).decode(errors="replace").strip() if process.stderr else ""
            raise TtsUnavailable(f"espeak-ng wrote no audio (exit {code}): {stderr[:200]}") from exc


def _safe_voice(voice: str) -> str:
    """A voice name espeak-ng knows the shape of (letters, digits, -, +, _); else the default."""
    if voice and len(voice) <= 40 and all(c.isalnum() or c in "-+_" for c in voice):
        return voice
    return DEFAULT_VOICE


def _even(data: bytes) -> tuple[bytes, bytes]:
    """Whole 16-bit samples only; an odd trailing byte waits for the next read."""
    cut = len(data) - len(data) % 2
    return data[:cut], data[cut:]
