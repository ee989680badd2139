"""Fakes for the voice sockets: a scripted VoiceInput on top of the real STT chain, and engines
that answer with scripted words or fail. `use_fake_voice(monkeypatch, engines)` plugs them in.

The fake input hears whatever frames arrive; `audio.end` is its end of turn: it reports speech
(`on_speech_start`, `on_speech` with the voiced milliseconds), opens the chain (once), replays the
audio into it and reports the final `Utterance`. So the chain's fallback and `on_switch` are the
real ones; only VAD is skipped.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from voice import live as voice_live
from voice.providers.base import SttChain, SttUnavailable, Transcript, pcm_ms


@dataclass
class FakeUtterance:
    text: str
    provider: str
    start_ms: int = 0
    end_ms: int = 0
    latency_ms: int = 0
    audio: bytes | None = None
    backchannel: bool = False


class ScriptedEngine:
    """Answers each utterance with the next scripted text; `partials` are reported first."""

    def __init__(self, name: str, texts=(), *, fail: bool = False, partials: bool = False):
        self.name = name
        self.texts = deque(texts)
        self.fail = fail
        self.partials = partials

    async def open(self, options, *, on_partial=None):
        if self.fail:
            raise SttUnavailable(f"{self.name} refused the connection")
        return _ScriptedStream(self, on_partial)


class _ScriptedStream:
    def __init__(self, engine: ScriptedEngine, on_partial):
        self.engine = engine
        self.provider = engine.name
        self.on_partial = on_partial
        self.heard = 0

    async def feed(self, pcm: bytes) -> None:
        self.heard += len(pcm)

    async def finish(self) -> Transcript:
        text = self.engine.texts.popleft() if self.engine.texts else ""
        if self.engine.partials and self.on_partial and text:
            first = text.split()[0]
            await self.on_partial(Transcript(text=first, is_final=False, provider=self.provider, end_ms=pcm_ms(self.heard)))
        self.heard = 0
        return Transcript(text=text, is_final=True, provider=self.provider)

    async def aclose(self) -> None:
        pass


class FakeVoiceInput:
    created: list[FakeVoiceInput] = []

    def __init__(self, *, chain, options, listener, keep_audio=False):
        self.chain, self.options, self.listener, self.keep_audio = chain, options, listener, keep_audio
        self.audio = b""
        self.at_ms = 0
        self.stream = None
        FakeVoiceInput.created.append(self)

    async def feed(self, pcm: bytes) -> None:
        if not self.audio:
            await self.listener.on_speech_start(start_ms=self.at_ms)
        self.audio += pcm
        await self.listener.on_speech(voiced_ms=pcm_ms(self.audio))

    async def end(self) -> None:
        if not self.audio:
            return
        if self.stream is None:

            async def on_partial(transcript):
                await self.listener.on_partial(transcript)

            async def on_switch(old, new, reason):
                await self.listener.on_switch(from_engine=old, to_engine=new, reason=reason)

            try:
                self.stream = await self.chain.open(self.options, on_partial=on_partial, on_switch=on_switch)
            except SttUnavailable:
                self.audio = b""
                return
        await self.stream.feed(self.audio)
        result = await self.stream.finish()
        start, end = self.at_ms, self.at_ms + pcm_ms(self.audio)
        self.at_ms = end
        utterance = FakeUtterance(
            text=result.text, provider=result.provider, start_ms=start, end_ms=end,
            audio=self.audio if self.keep_audio else None,
        )
        self.audio = b""
        await self.listener.on_final(utterance)

    async def text_result(self, text: str, *, is_final: bool = True) -> None:
        if is_final:
            await self.listener.on_final(FakeUtterance(text=text, provider="browser"))
        else:
            await self.listener.on_partial(Transcript(text=text, is_final=False, provider="browser"))

    async def aclose(self) -> None:
        if self.stream is not None:
            await self.stream.aclose()


def use_fake_voice(monkeypatch, engines) -> None:
    """Room, conversation and lecture sockets hear through FakeVoiceInput and these engines."""
    FakeVoiceInput.created = []
    monkeypatch.setattr(voice_live, "voice_input_factory", lambda **kwargs: FakeVoiceInput(**kwargs))
    monkeypatch.setattr(voice_live, "stt_chain_factory", lambda: SttChain(list(engines)))


def pcm(ms: int, value: int = 1000) -> bytes:
    """`ms` of a constant (non-silent) PCM16 signal."""
    return value.to_bytes(2, "little", signed=True) * (16 * ms)


async def say(socket, ms: int = 800, frame_ms: int = 40) -> None:
    """Send `ms` of audio in frames, then `audio.end`."""
    for _ in range(ms // frame_ms):
        await socket.comm.send_to(bytes_data=pcm(frame_ms))
    await socket.send({"type": "audio.end", "data": {}})
