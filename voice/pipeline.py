"""Voice input for one connection: audio frames in, utterances out.

    voice = VoiceInput(chain=stt_chain_for(), options=StreamOptions(keywords=...), listener=self)
    await voice.feed(frame)        # each binary frame; raises AudioError on a malformed one
    await voice.end()              # client `audio.end`: the current utterance ends now
    await voice.aclose()           # the connection is gone

`feed` checks the frame and runs VAD (`voice.vad.Segmenter`) on the event loop: microseconds per
20 ms frame. Speech start and the barge-in candidate (`on_speech`, once per utterance when its
voiced audio passes settings.VOICE_BARGE_IN_MS) are told to the listener from `feed` itself, so
they are never late. Everything about transcription (opening the STT chain lazily at the first
speech, feeding pre-roll + speech, `finish()` at the end of each utterance, partials, finals,
engine switches) runs in one worker task per connection, in order, so `feed` never waits for an
engine; engines decode off the loop (pocketsphinx in a thread, the cloud ones over the network).

Offsets (`start_ms`, `end_ms`, partials' too) are milliseconds of audio since the VoiceInput
began; the consumer adds the session offset. `latency_ms` is from the end of speech (VAD's end of
turn, or `end()`) to the final. A final with empty text is not reported. If every engine fails,
the listener hears `on_switch(to_engine=None)` and the utterance is dropped with a warning.
The worker may still be transcribing utterance n when utterance n+1 starts: `on_speech_start`
of n+1 can come before the final of n. The queue is not bounded: an engine slower than real time
makes finals late (bench/audio_ingest.py), never frames. A client that recognises speech itself
(`text_result`) should not also have its audio transcribed: the consumer picks one per connection
(VAD alone, for barge-in: `SttChain([voice.providers.NullSttEngine()])`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Protocol

from django.conf import settings

from voice.audio import frame_check
from voice.providers.base import ChainStream, StreamOptions, SttChain, SttUnavailable, Transcript
from voice.vad import Segmenter, SpeechAudio, SpeechEnd, SpeechStart, VadEvent, is_backchannel

logger = logging.getLogger(__name__)

BROWSER = "browser"
# At close, how long the utterances already heard may take to be transcribed before they are dropped.
CLOSE_DRAIN_SECONDS = 5.0


@dataclass(frozen=True)
class Utterance:
    text: str
    provider: str
    start_ms: int
    end_ms: int
    latency_ms: int
    audio: bytes | None  # pre-roll + speech, when the VoiceInput keeps audio
    backchannel: bool  # only "mhm", "okay", "I see"...: not an interruption


class VoiceListener(Protocol):
    async def on_speech_start(self, *, start_ms: int) -> None: ...

    async def on_speech(self, *, voiced_ms: int) -> None:
        """Once per utterance, when its voiced audio passes VOICE_BARGE_IN_MS."""

    async def on_partial(self, transcript: Transcript) -> None: ...

    async def on_final(self, utterance: Utterance) -> None:
        """Not called for an empty transcript."""

    async def on_switch(self, *, from_engine: str, to_engine: str | None, reason: str) -> None: ...


@dataclass(slots=True)
class _Audio:
    pcm: bytes


@dataclass(slots=True)
class _Begin:
    start_ms: int


@dataclass(slots=True)
class _End:
    start_ms: int
    end_ms: int
    voiced_ms: int
    ended_at: float
    audio: bytes | None


class VoiceInput:
    def __init__(
        self,
        *,
        chain: SttChain,
        options: StreamOptions,
        listener: VoiceListener,
        keep_audio: bool = False,
        vad: Segmenter | None = None,
    ):
        self.chain = chain
        self.options = options
        self.listener = listener
        self.keep_audio = keep_audio
        self.vad = vad or Segmenter()
        self.barge_in_ms = settings.VOICE_BARGE_IN_MS
        # loop side: the utterance VAD is in
        self._speaking = False
        self._start_ms = 0
        self._barge_in_told = False
        self._audio: list[bytes] = []
        # worker side
        self._queue: asyncio.Queue[_Begin | _Audio | _End] = asyncio.Queue()
        self._worker: asyncio.Task | None = None
        self._stream: ChainStream | None = None
        self._utterance_failed = False
        self._utterance_start_ms = 0  # of the utterance the worker is transcribing
        self._closed = False

    # --- the connection's side ---------------------------------------------------------------

    async def feed(self, pcm: bytes) -> None:
        """One binary frame (PCM16 LE mono 16 kHz); AudioError if it is malformed."""
        frame = frame_check(pcm)
        if self._closed:
            return
        await self._handle(self.vad.push(frame))
        if self._speaking and not self._barge_in_told and self.vad.voiced_ms >= self.barge_in_ms:
            self._barge_in_told = True
            await self._tell("on_speech", voiced_ms=self.vad.voiced_ms)

    async def end(self) -> None:
        """The client says its audio stopped (`audio.end`): the current utterance ends now."""
        if not self._closed:
            await self._handle(self.vad.flush())

    async def text_result(self, text: str, *, is_final: bool) -> None:
        """A transcript the browser made (Web Speech API): handled like an engine's result."""
        text = text.strip()
        if self._closed or not text:
            return
        now_ms = self.vad.position_ms
        start_ms = self._start_ms if self._speaking else now_ms
        if not is_final:
            await self._tell(
                "on_partial",
                Transcript(text=text, is_final=False, provider=BROWSER, start_ms=start_ms, end_ms=now_ms),
            )
            return
        await self._tell(
            "on_final",
            Utterance(
                text=text, provider=BROWSER, start_ms=start_ms, end_ms=now_ms, latency_ms=0,
                audio=None, backchannel=is_backchannel(text),
            ),
        )

    async def idle(self) -> None:
        """Wait until every utterance so far has been transcribed (tests, benches, shutdown)."""
        if self._worker is not None and not self._worker.done():
            await self._queue.join()

    async def aclose(self) -> None:
        """The connection is gone: what was heard is transcribed (at most CLOSE_DRAIN_SECONDS),
        then transcription stops and the engine's stream is released."""
        if self._closed:
            return
        self._closed = True
        if self._worker is not None and not self._worker.done():
            # What was said before the socket went (a mic stopped, its socket closed at once) is
            # still transcribed and reported, if that takes at most CLOSE_DRAIN_SECONDS.
            await self._handle(self.vad.flush())  # an utterance in progress ends here
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), CLOSE_DRAIN_SECONDS)
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker  # the worker logs its own errors and never raises them
        await self._close_stream()

    # --- VAD events (on the loop) ------------------------------------------------------------

    async def _handle(self, events: list[VadEvent]) -> None:
        for event in events:
            if isinstance(event, SpeechAudio):
                if self.keep_audio:
                    self._audio.append(event.pcm)
                self._put(_Audio(event.pcm))
            elif isinstance(event, SpeechStart):
                self._speaking, self._start_ms, self._barge_in_told = True, event.start_ms, False
                self._audio = []
                self._put(_Begin(event.start_ms))
                await self._tell("on_speech_start", start_ms=event.start_ms)
            elif isinstance(event, SpeechEnd):
                audio = b"".join(self._audio) if self.keep_audio else None
                self._speaking, self._audio = False, []
                self._put(_End(self._start_ms, event.end_ms, event.voiced_ms, time.monotonic(), audio))

    def _put(self, item: _Begin | _Audio | _End) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._work(), name="voice-input")
        self._queue.put_nowait(item)

    async def _tell(self, method: str, *args, **kwargs) -> None:
        try:
            await getattr(self.listener, method)(*args, **kwargs)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("voice listener %s failed", method)

    # --- transcription (the worker task) -----------------------------------------------------

    async def _work(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                if isinstance(item, _Audio):
                    await self._transcribe_audio(item.pcm)
                elif isinstance(item, _Begin):
                    self._utterance_start_ms, self._utterance_failed = item.start_ms, False
                else:
                    await self._transcribe_end(item)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("voice input: transcription step failed")
                self._utterance_failed = True
            finally:
                self._queue.task_done()

    async def _transcribe_audio(self, pcm: bytes) -> None:
        if self._utterance_failed:
            return
        try:
            if self._stream is None:
                self._stream = await self.chain.open(
                    self.options, on_partial=self._on_partial, on_switch=self._on_switch
                )
            await self._stream.feed(pcm)
        except SttUnavailable as exc:
            self._utterance_failed = True
            logger.warning("voice input: no STT engine for this utterance, dropped: %s", exc)
            await self._close_stream()

    async def _transcribe_end(self, end: _End) -> None:
        if self._utterance_failed or self._stream is None:
            self._utterance_failed = False
            return
        try:
            final = await self._stream.finish()
        except SttUnavailable as exc:
            logger.warning("voice input: every STT engine failed, utterance dropped: %s", exc)
            await self._close_stream()
            return
        text = final.text.strip()
        if not text:
            return
        await self._tell(
            "on_final",
            Utterance(
                text=text,
                provider=final.provider,
                start_ms=end.start_ms,
                end_ms=end.end_ms,
                latency_ms=int((time.monotonic() - end.ended_at) * 1000),
                audio=end.audio,
                backchannel=is_backchannel(text),
            ),
        )

    async def _on_partial(self, transcript: Transcript) -> None:
        offset = self._utterance_start_ms
        shifted = dataclasses.replace(
            transcript, start_ms=offset + transcript.start_ms, end_ms=offset + transcript.end_ms
        )
        await self._tell("on_partial", shifted)

    async def _on_switch(self, from_engine: str, to_engine: str | None, reason: str) -> None:
        await self._tell("on_switch", from_engine=from_engine, to_engine=to_engine, reason=reason)

    async def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.aclose()
