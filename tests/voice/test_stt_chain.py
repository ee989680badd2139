"""The STT chain: fallback mid-utterance without losing audio, switches reported, health kept."""

from __future__ import annotations

import pytest

from voice.providers.base import EngineHealth, StreamOptions, SttChain, SttUnavailable, Transcript


class RecordingEngine:
    """Hears bytes and answers with how many it heard; can be told to fail at a point."""

    def __init__(self, name: str, *, fail_open: bool = False, fail_after_bytes: int | None = None):
        self.name = name
        self.fail_open = fail_open
        self.fail_after_bytes = fail_after_bytes
        self.streams: list[RecordingStream] = []

    async def open(self, options, *, on_partial=None):
        if self.fail_open:
            raise SttUnavailable(f"{self.name} is down")
        stream = RecordingStream(self)
        self.streams.append(stream)
        return stream


class RecordingStream:
    def __init__(self, engine: RecordingEngine):
        self.engine = engine
        self.provider = engine.name
        self.heard = b""
        self.closed = False

    async def feed(self, pcm: bytes) -> None:
        limit = self.engine.fail_after_bytes
        if limit is not None and len(self.heard) + len(pcm) > limit:
            raise SttUnavailable("connection dropped")
        self.heard += pcm

    async def finish(self) -> Transcript:
        text = self.heard.decode()
        self.heard = b""
        return Transcript(text=text, is_final=True, provider=self.provider)

    async def aclose(self) -> None:
        self.closed = True


@pytest.mark.asyncio
async def test_engine_failing_mid_utterance_hands_the_whole_utterance_to_the_next():
    first = RecordingEngine("deepgram", fail_after_bytes=6)
    second = RecordingEngine("pocketsphinx")
    switches = []

    async def on_switch(old, new, reason):
        switches.append((old, new, reason))

    stream = await SttChain([first, second]).open(StreamOptions(), on_switch=on_switch)
    for chunk in (b"abc", b"def", b"ghi"):
        await stream.feed(chunk)
    result = await stream.finish()

    assert result.text == "abcdefghi"  # nothing lost, nothing doubled
    assert result.provider == "pocketsphinx"
    assert switches == [("deepgram", "pocketsphinx", "connection dropped")]
    assert first.streams[0].closed


@pytest.mark.asyncio
async def test_engine_that_cannot_open_is_skipped_and_then_kept_out_while_cooling_down():
    now = [0.0]
    health = EngineHealth(cooldown_seconds=30, clock=lambda: now[0])
    down = RecordingEngine("deepgram", fail_open=True)
    chain = SttChain([down, RecordingEngine("pocketsphinx")], health=health)

    stream = await chain.open(StreamOptions())
    assert stream.provider == "pocketsphinx"
    assert not health.healthy("deepgram")

    down.fail_open = False
    stream = await chain.open(StreamOptions())
    assert stream.provider == "pocketsphinx"  # still cooling down
    now[0] = 31.0
    stream = await chain.open(StreamOptions())
    assert stream.provider == "deepgram"


@pytest.mark.asyncio
async def test_no_engine_left_raises_and_reports_it():
    switches = []

    async def on_switch(old, new, reason):
        switches.append((old, new))

    with pytest.raises(SttUnavailable):
        await SttChain([RecordingEngine("a", fail_open=True)]).open(StreamOptions(), on_switch=on_switch)
    assert switches == [("a", None)]


@pytest.mark.asyncio
async def test_replay_that_fails_again_moves_on_without_doubling_audio():
    first = RecordingEngine("a", fail_after_bytes=4)
    second = RecordingEngine("b", fail_after_bytes=5)
    third = RecordingEngine("c")
    stream = await SttChain([first, second, third]).open(StreamOptions())
    for chunk in (b"12", b"34", b"56", b"78"):
        await stream.feed(chunk)
    assert (await stream.finish()).text == "12345678"
    # The next utterance starts clean on the engine that worked.
    await stream.feed(b"xy")
    assert (await stream.finish()).text == "xy"
