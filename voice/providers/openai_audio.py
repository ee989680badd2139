"""OpenAI speech through the official SDK (openai 3): transcription per utterance, and speech.

`OpenAITranscriptionEngine` buffers an utterance and, at `finish()`, posts it as a WAV to
`audio.transcriptions` (model OPENAI_TRANSCRIBE_MODEL, the course's scope terms as the `prompt`);
it has no partials. `OpenAISpeechEngine` streams `audio.speech` as raw PCM16 24 kHz mono, chunk by
chunk as it arrives. Both talk to OPENAI_BASE_URL (any OpenAI-compatible server) with the SDK's
retries off (the chains fall back instead) and a timeout of OPENAI_AUDIO_TIMEOUT_SECONDS; every
error is `SttUnavailable` / `TtsUnavailable`. Usage goes out through `courses.usage`.
"""

from __future__ import annotations

import io
import logging
import time
import wave
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal

import openai
from django.conf import settings

from courses.openai_clients import openai_loop_client
from voice.providers.base import (
    SAMPLE_RATE,
    SAMPLE_WIDTH,
    PartialCallback,
    StreamOptions,
    SttUnavailable,
    Transcript,
    TtsUnavailable,
    pcm_ms,
)
from voice.providers.usage import UsageRecorder, usage_cost

logger = logging.getLogger(__name__)

PROMPT_MAX_CHARS = 800  # Whisper reads the last ~224 tokens of a prompt
TTS_SAMPLE_RATE = 24_000  # response_format="pcm": 24 kHz PCM16 LE mono



def audio_timeout() -> openai.Timeout:
    total = float(settings.OPENAI_AUDIO_TIMEOUT_SECONDS)
    return openai.Timeout(total, connect=min(total, 5.0))


def audio_client(*, base_url: str, api_key: str) -> openai.AsyncOpenAI:
    """The shared client for this loop, base URL and key (courses.openai_clients)."""
    return openai_loop_client(purpose="audio", base_url=base_url, api_key=api_key, timeout=audio_timeout())


def describe_openai_error(exc: openai.OpenAIError) -> tuple[str, str]:
    """(message, UsageEvent outcome) for an SDK error."""
    if isinstance(exc, openai.APITimeoutError):
        return f"timed out after {float(settings.OPENAI_AUDIO_TIMEOUT_SECONDS):g} s", "timeout"
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc
        return f"connection failed: {type(cause).__name__}: {cause}", "error"
    if isinstance(exc, openai.APIStatusError):
        return exc.message, "error"  # "Error code: 401 - ..."
    return f"{type(exc).__name__}: {exc}", "error"


def wav_bytes(pcm: bytes, *, sample_rate: int = SAMPLE_RATE) -> bytes:
    """PCM16 LE mono as a WAV file."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(SAMPLE_WIDTH)
        writer.setframerate(sample_rate)
        writer.writeframes(pcm)
    return buffer.getvalue()


def keywords_prompt(keywords: Sequence[str]) -> str:
    """The course's scope terms as a transcription prompt (the model spells them this way)."""
    terms: list[str] = []
    size = 0
    for term in (keyword.strip() for keyword in keywords):
        if not term or term in terms:
            continue
        size += len(term) + 2
        if size > PROMPT_MAX_CHARS:
            break
        terms.append(term)
    return f"Terms: {', '.join(terms)}." if terms else ""


# --- Speech to text ------------------------------------------------------------------------------


class OpenAITranscriptionEngine:
    """An `SttEngine`: one transcription request per utterance."""

    name = "openai"

    def __init__(self, *, api_key: str | None = None, base_url: str | None = None, model: str | None = None):
        self.api_key = settings.OPENAI_API_KEY if api_key is None else api_key
        self.base_url = settings.OPENAI_BASE_URL if base_url is None else base_url
        self.model = model or settings.OPENAI_TRANSCRIBE_MODEL

    async def open(
        self, options: StreamOptions, *, on_partial: PartialCallback | None = None
    ) -> OpenAITranscriptionStream:
        if not self.api_key:
            raise SttUnavailable("OPENAI_API_KEY is not set")
        return OpenAITranscriptionStream(self, options)


class OpenAITranscriptionStream:
    provider = "openai"

    def __init__(self, engine: OpenAITranscriptionEngine, options: StreamOptions):
        self.engine = engine
        self.options = options
        self.prompt = keywords_prompt(options.keywords)
        self.usage = UsageRecorder(options.usage)
        self._audio = bytearray()

    async def feed(self, pcm: bytes) -> None:
        self._audio += pcm

    async def finish(self) -> Transcript:
        pcm, self._audio = bytes(self._audio), bytearray()
        duration_ms = pcm_ms(pcm)
        if not duration_ms:
            return Transcript(text="", is_final=True, provider=self.provider)
        client = audio_client(base_url=self.engine.base_url, api_key=self.engine.api_key)
        extra: dict = {}
        if self.prompt:
            extra["prompt"] = self.prompt
        if self.options.language:
            extra["language"] = self.options.language
        started = time.monotonic()
        try:
            result = await client.audio.transcriptions.create(
                file=("utterance.wav", wav_bytes(pcm), "audio/wav"),
                model=self.engine.model,
                response_format="json",
                timeout=audio_timeout(),
                **extra,
            )
        except openai.OpenAIError as exc:
            message, outcome = describe_openai_error(exc)
            self._record(Decimal(0), started, outcome=outcome, error=message)
            raise SttUnavailable(f"openai transcription: {message}") from exc
        seconds = Decimal(duration_ms) / 1000
        latency_ms = self._record(seconds, started)
        return Transcript(
            text=(result.text or "").strip(),
            is_final=True,
            provider=self.provider,
            start_ms=0,
            end_ms=duration_ms,
            latency_ms=latency_ms,
        )

    def _record(self, seconds: Decimal, started: float, *, outcome: str = "ok", error: str = "") -> int:
        latency_ms = round((time.monotonic() - started) * 1000)
        self.usage.record(
            kind="stt",
            provider=self.provider,
            model=self.engine.model,
            units=seconds,
            cost=usage_cost(settings.OPENAI_TRANSCRIBE_COST_PER_MINUTE, seconds / 60),
            latency_ms=latency_ms,
            outcome=outcome,
            error=error,
        )
        return latency_ms

    async def aclose(self) -> None:
        self._audio = bytearray()
        await self.usage.drain()


# --- Text to speech ------------------------------------------------------------------------------


class OpenAISpeechEngine:
    """A `TtsEngine`: `audio.speech`, streamed as PCM16 24 kHz mono.

    `usage`: the context of UsageEvent records (tenant_id, course_id, session_id, ...), since the
    TtsEngine interface carries none; build one engine per session or conversation."""

    name = "openai"
    sample_rate = TTS_SAMPLE_RATE

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        model: str | None = None,
        usage: dict | None = None,
    ):
        self.api_key = settings.OPENAI_API_KEY if api_key is None else api_key
        self.base_url = settings.OPENAI_BASE_URL if base_url is None else base_url
        self.model = model or settings.OPENAI_TTS_MODEL
        self.usage = dict(usage or {})
        self._usage = UsageRecorder(self.usage)

    async def drain(self) -> None:
        """Wait for the usage records still being written (they never hold up the audio)."""
        await self._usage.drain()

    async def synthesize(self, text: str, *, voice: str = "") -> AsyncIterator[bytes]:
        if not self.api_key:
            raise TtsUnavailable("OPENAI_API_KEY is not set")
        text = text.strip()
        if not text:
            return
        client = audio_client(base_url=self.base_url, api_key=self.api_key)
        started = time.monotonic()
        outcome, error, carry = "cancelled", "", b""
        try:
            async with client.audio.speech.with_streaming_response.create(
                model=self.model,
                voice=voice or settings.OPENAI_TTS_VOICE,
                input=text,
                response_format="pcm",
                timeout=audio_timeout(),
            ) as response:
                async for chunk in response.iter_bytes():
                    data = carry + chunk
                    cut = len(data) - len(data) % SAMPLE_WIDTH  # whole samples only
                    carry = data[cut:]
                    if cut:
                        yield data[:cut]
            outcome = "ok"
        except openai.OpenAIError as exc:
            error, outcome = describe_openai_error(exc)
            raise TtsUnavailable(f"openai speech: {error}") from exc
        finally:
            # Billed by characters sent: a reply cut short by the listener still costs them all.
            characters = Decimal(len(text)) if outcome in ("ok", "cancelled") else Decimal(0)
            self._usage.record(
                kind="tts",
                provider=self.name,
                model=self.model,
                units=characters,
                cost=usage_cost(settings.OPENAI_TTS_COST_PER_1K_CHARS, characters / 1000),
                latency_ms=round((time.monotonic() - started) * 1000),
                outcome=outcome,
                error=error,
            )
