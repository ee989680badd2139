"""The speech-to-text interface every engine speaks, and the chain that falls back between them.

Audio is PCM16 little-endian mono at 16 kHz everywhere (DESIGN.md, Real-time). The ingest pipeline
(voice/pipeline.py) cuts a speaking connection's audio into utterances with VAD; for each one it
feeds the audio to an `SttStream` and asks for the final transcript when the utterance ends:

    stream = await chain.open(StreamOptions(keywords=course.scope_terms), on_partial=send_partial)
    await stream.feed(frame)           # as frames arrive; partials come through on_partial
    final = await stream.finish()      # the utterance is over: its final Transcript
    ...                                # more utterances on the same stream
    await stream.aclose()              # the connection is gone

Streaming engines (Deepgram) keep one upstream connection per speaking connection across
utterances (keep-alive in between, Finalize at the end of each); per-utterance engines
(OpenAI transcription, pocketsphinx) buffer the audio and decode in `finish`.

An engine that cannot work raises `SttUnavailable` from `open`, `feed` or `finish`. The chain
then records the switch, opens the next engine and replays the utterance's audio into it, so the
utterance is not lost; a failed engine is skipped for `cooldown_seconds` before it is tried again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
SAMPLE_WIDTH = 2  # bytes: PCM16
BYTES_PER_MS = SAMPLE_RATE * SAMPLE_WIDTH // 1000  # 32


def pcm_ms(pcm: bytes | int) -> int:
    """Duration in milliseconds of PCM16 mono 16 kHz audio (bytes or a byte count)."""
    size = pcm if isinstance(pcm, int) else len(pcm)
    return size // BYTES_PER_MS


@dataclass(frozen=True, slots=True)
class Transcript:
    """What an engine heard. Times are milliseconds from the start of the utterance."""

    text: str
    is_final: bool
    provider: str
    start_ms: int = 0
    end_ms: int = 0
    confidence: float | None = None
    latency_ms: int = 0  # end of audio (finish) to this result


@dataclass(frozen=True, slots=True)
class StreamOptions:
    """What every engine may use to hear better."""

    language: str = "en"
    # Course scope terms: keywords for Deepgram, a prompt for OpenAI, a keyword list for
    # pocketsphinx (which makes it exact on those words).
    keywords: Sequence[str] = ()
    # Context for usage records (UsageEvent through courses.usage): tenant, course, session, user.
    usage: dict = field(default_factory=dict)


class SttUnavailable(Exception):
    """The engine cannot serve this stream (no key, refused, timed out, 5xx, closed): fall back."""


PartialCallback = Callable[[Transcript], Awaitable[None]]


@runtime_checkable
class SttStream(Protocol):
    provider: str

    async def feed(self, pcm: bytes) -> None:
        """Audio of the current utterance."""

    async def finish(self) -> Transcript:
        """The current utterance is over: its final transcript (text may be empty)."""

    async def aclose(self) -> None:
        """Release the stream (upstream connection, decoder). Never raises."""


@runtime_checkable
class SttEngine(Protocol):
    name: str  # "deepgram", "openai", "pocketsphinx"

    async def open(self, options: StreamOptions, *, on_partial: PartialCallback | None = None) -> SttStream:
        """A stream for one speaking connection; raises SttUnavailable if the engine cannot."""


SwitchCallback = Callable[[str, str | None, str], Awaitable[None]]  # (from, to or None, reason)


class EngineHealth:
    """Which engines failed recently. Shared by the chains of one process."""

    def __init__(self, cooldown_seconds: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.cooldown_seconds = cooldown_seconds
        self._clock = clock
        self._failed_at: dict[str, float] = {}

    def healthy(self, name: str) -> bool:
        failed_at = self._failed_at.get(name)
        return failed_at is None or self._clock() - failed_at >= self.cooldown_seconds

    def failed(self, name: str) -> None:
        self._failed_at[name] = self._clock()

    def recovered(self, name: str) -> None:
        self._failed_at.pop(name, None)

    def snapshot(self) -> dict[str, bool]:
        return {name: self.healthy(name) for name in self._failed_at}


class SttChain:
    """Engines in order of preference; opens a `ChainStream` on the first that works."""

    def __init__(self, engines: Sequence[SttEngine], *, health: EngineHealth | None = None):
        if not engines:
            raise ValueError("an STT chain needs at least one engine")
        self.engines = list(engines)
        self.health = health or EngineHealth()

    async def open(
        self,
        options: StreamOptions,
        *,
        on_partial: PartialCallback | None = None,
        on_switch: SwitchCallback | None = None,
    ) -> ChainStream:
        stream = ChainStream(self, options, on_partial=on_partial, on_switch=on_switch)
        await stream.start()
        return stream


class ChainStream:
    """An `SttStream` that moves to the next engine when one fails, replaying the utterance."""

    def __init__(
        self,
        chain: SttChain,
        options: StreamOptions,
        *,
        on_partial: PartialCallback | None,
        on_switch: SwitchCallback | None,
    ):
        self.chain = chain
        self.options = options
        self.on_partial = on_partial
        self.on_switch = on_switch
        self.current: SttStream | None = None
        self.provider = ""
        self._index = -1
        self._utterance: list[bytes] = []  # audio of the current utterance, for a replay
        self._generation = 0  # bumped at each switch, so a replay interrupted by one stops

    async def start(self) -> None:
        await self._open_from(0, failed=None, reason="")

    async def _open_from(self, index: int, *, failed: str | None, reason: str) -> None:
        """Open the first healthy engine at `index` or after; if none is healthy, try the
        unhealthy ones too before giving up (better a slow retry than losing speech)."""
        order = list(range(index, len(self.chain.engines)))
        candidates = [i for i in order if self.chain.health.healthy(self.chain.engines[i].name)]
        candidates += [i for i in order if i not in candidates]
        for i in candidates:
            engine = self.chain.engines[i]
            try:
                stream = await engine.open(self.options, on_partial=self.on_partial)
            except SttUnavailable as exc:
                logger.warning("STT engine %s unavailable: %s", engine.name, exc)
                self.chain.health.failed(engine.name)
                reason = reason or str(exc)
                failed = failed or engine.name
                continue
            self.current, self.provider, self._index = stream, engine.name, i
            if failed is not None and self.on_switch is not None:
                await self.on_switch(failed, engine.name, reason)
            return
        self.current, self.provider = None, ""
        if self.on_switch is not None:
            await self.on_switch(failed or "", None, reason or "no engine available")
        raise SttUnavailable("no speech-to-text engine is available")

    async def _fail_over(self, exc: SttUnavailable) -> None:
        failed = self.provider
        logger.warning("STT engine %s failed mid-stream, switching: %s", failed, exc)
        self.chain.health.failed(failed)
        if self.current is not None:
            await self.current.aclose()
        await self._open_from(self._index + 1, failed=failed, reason=str(exc) or type(exc).__name__)
        self._generation += 1
        generation = self._generation
        for chunk in list(self._utterance):  # the next engine hears the whole utterance
            await self._feed_current(chunk)
            if generation != self._generation:
                return  # that engine failed too; the one after it was given the replay

    async def _feed_current(self, pcm: bytes) -> None:
        while True:
            if self.current is None:
                raise SttUnavailable("no speech-to-text engine is available")
            try:
                await self.current.feed(pcm)
                return
            except SttUnavailable as exc:
                await self._fail_over(exc)
                # _fail_over replayed the utterance, this chunk included: done.
                return

    async def feed(self, pcm: bytes) -> None:
        self._utterance.append(pcm)
        await self._feed_current(pcm)

    async def finish(self) -> Transcript:
        while True:
            if self.current is None:
                raise SttUnavailable("no speech-to-text engine is available")
            try:
                result = await self.current.finish()
            except SttUnavailable as exc:
                await self._fail_over(exc)
                continue
            self.chain.health.recovered(self.provider)
            self._utterance = []
            return result

    async def aclose(self) -> None:
        if self.current is not None:
            try:
                await self.current.aclose()
            except Exception:  # an engine's close must not break the caller's cleanup
                logger.warning("closing STT stream %s failed", self.provider, exc_info=True)
            self.current = None


# --- Text to speech -----------------------------------------------------------------------------
# A TTS engine turns one sentence into PCM16 mono audio at its own `sample_rate`, streamed in
# chunks as it is made, so a client can start playing before the sentence is done. The reply is
# spoken sentence by sentence as it streams (voice/speech.py), and the chain falls back engine by
# engine; the last resort is the browser's speechSynthesis (`tts.speak` {text, voice}), which
# needs no engine on the server.


class TtsUnavailable(Exception):
    """The engine cannot speak now (no key, refused, timed out, missing binary): fall back."""


@runtime_checkable
class TtsEngine(Protocol):
    name: str  # "openai", "piper", "espeak"
    sample_rate: int  # of the PCM16 mono it yields

    def synthesize(self, text: str, *, voice: str = "") -> AsyncIterator[bytes]:
        """PCM16 LE mono chunks of `text` spoken; raises TtsUnavailable (before the first chunk
        where it can). `voice`: the persona's voice for this engine, "" for its default."""
