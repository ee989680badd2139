"""VoiceInput on real speech (espeak-ng) through the real pocketsphinx engine: utterances out."""

from __future__ import annotations

import asyncio
import sys
import types

import pytest

from tests.voice.audio_support import frames, noise, silence, speak
from voice.audio import AudioError
from voice.pipeline import Utterance, VoiceInput
from voice.providers import NullSttEngine, stt_chain_for
from voice.providers.base import EngineHealth, StreamOptions, SttChain, SttUnavailable, Transcript
from voice.providers.pocketsphinx import DecoderPool, PocketsphinxEngine
from voice.vad import Segmenter


class Recorder:
    """A VoiceListener that writes down what it hears."""

    def __init__(self):
        self.calls: list[tuple] = []
        self.finals: list[Utterance] = []
        self.partials: list[Transcript] = []

    async def on_speech_start(self, *, start_ms: int) -> None:
        self.calls.append(("start", start_ms))

    async def on_speech(self, *, voiced_ms: int) -> None:
        self.calls.append(("speech", voiced_ms))

    async def on_partial(self, transcript: Transcript) -> None:
        self.partials.append(transcript)

    async def on_final(self, utterance: Utterance) -> None:
        self.calls.append(("final", utterance.text))
        self.finals.append(utterance)

    async def on_switch(self, *, from_engine: str, to_engine: str | None, reason: str) -> None:
        self.calls.append(("switch", from_engine, to_engine, reason))

    def kinds(self, kind: str) -> list[tuple]:
        return [call for call in self.calls if call[0] == kind]


class FlakyEngine:
    """A cloud-like engine that drops its connection after `fail_after_frames` frames."""

    def __init__(self, name: str = "deepgram", *, fail_after_frames: int | None = None, fail_open: bool = False):
        self.name = name
        self.fail_after_frames = fail_after_frames
        self.fail_open = fail_open
        self.opened = 0

    async def open(self, options, *, on_partial=None):
        self.opened += 1
        if self.fail_open:
            raise SttUnavailable(f"{self.name} refused the connection")
        return FlakyStream(self)


class FlakyStream:
    def __init__(self, engine: FlakyEngine):
        self.engine, self.provider, self.frames = engine, engine.name, 0

    async def feed(self, pcm: bytes) -> None:
        self.frames += 1
        if self.engine.fail_after_frames is not None and self.frames > self.engine.fail_after_frames:
            raise SttUnavailable("connection dropped")

    async def finish(self) -> Transcript:
        return Transcript(text="", is_final=True, provider=self.provider)

    async def aclose(self) -> None:
        return None


def pocketsphinx() -> PocketsphinxEngine:
    return PocketsphinxEngine(pool=DecoderPool(2))


async def run(voice: VoiceInput, pcm: bytes, *, end: bool = False) -> None:
    for frame in frames(pcm):
        await voice.feed(frame)
    if end:
        await voice.end()
    await voice.idle()


async def test_a_spoken_question_becomes_one_final_with_its_words():
    listener = Recorder()
    voice = VoiceInput(
        chain=SttChain([pocketsphinx()]),
        options=StreamOptions(keywords=["what is recursion"]),
        listener=listener,
        keep_audio=True,
    )
    sentence = speak("what is recursion")
    await run(voice, silence(500) + sentence + silence(1000))
    await voice.aclose()

    assert [call[0] for call in listener.calls] == ["start", "speech", "final"]
    [utterance] = listener.finals
    assert utterance.text == "what is recursion"
    assert (utterance.provider, utterance.backchannel) == ("pocketsphinx", False)
    assert 200 <= utterance.start_ms <= 500
    assert utterance.start_ms < utterance.end_ms <= 500 + len(sentence) // 32 + 100
    assert utterance.latency_ms >= 0
    assert len(utterance.audio) >= len(sentence)  # pre-roll + speech + the end-of-turn silence
    assert listener.partials and all(p.start_ms == utterance.start_ms for p in listener.partials)
    assert all(p.end_ms > p.start_ms for p in listener.partials)  # offsets since the input began


async def test_two_sentences_a_second_apart_are_two_utterances():
    listener = Recorder()
    voice = VoiceInput(
        chain=SttChain([pocketsphinx()]),
        options=StreamOptions(keywords=["what is recursion", "binary search"]),
        listener=listener,
    )
    await run(voice, silence(300) + speak("what is recursion") + silence(1000) + speak("binary search") + silence(1000))
    await voice.aclose()

    assert [u.text for u in listener.finals] == ["what is recursion", "binary search"]
    first, second = listener.finals
    assert first.end_ms < second.start_ms
    assert first.audio is None  # audio is kept only when asked


async def test_silence_and_noise_make_no_utterance_and_open_no_engine():
    engine = FlakyEngine()
    listener = Recorder()
    voice = VoiceInput(chain=SttChain([engine]), options=StreamOptions(), listener=listener)
    await run(voice, silence(2000), end=True)
    await run(VoiceInput(chain=SttChain([engine]), options=StreamOptions(), listener=listener), noise(4000, amplitude=40), end=True)
    await voice.aclose()
    assert listener.calls == []
    assert engine.opened == 0


async def test_with_silero_confirmation_a_noise_burst_after_silence_is_no_utterance():
    engine = FlakyEngine()
    listener = Recorder()
    pcm = silence(1000) + noise(1500, amplitude=2000) + silence(1000)
    plain = VoiceInput(chain=SttChain([engine]), options=StreamOptions(), listener=Recorder())
    await run(plain, pcm, end=True)  # webrtcvad alone takes the onset for speech
    await plain.aclose()
    assert engine.opened == 1

    voice = VoiceInput(
        chain=SttChain([engine]), options=StreamOptions(), listener=listener, vad=Segmenter(confirm=True)
    )
    await run(voice, pcm, end=True)
    await voice.aclose()
    assert listener.calls == []
    assert engine.opened == 1


async def test_malformed_frames_raise_audio_error():
    voice = VoiceInput(chain=SttChain([FlakyEngine()]), options=StreamOptions(), listener=Recorder())
    for bad, code in ((b"", "audio_malformed"), (b"\x01\x02\x03", "audio_malformed"),
                      (bytes(64 * 1024), "audio_frame_too_large")):
        with pytest.raises(AudioError) as caught:
            await voice.feed(bad)
        assert caught.value.code == code
    await voice.feed(silence(20))  # still usable afterwards
    await voice.aclose()


async def test_long_speech_is_a_barge_in_candidate_and_a_short_ok_is_not():
    listener = Recorder()
    voice = VoiceInput(
        chain=SttChain([pocketsphinx()]),
        options=StreamOptions(keywords=["okay", "why does recursion need a base case"]),
        listener=listener,
    )
    await run(voice, silence(300) + speak("okay", speed=200) + silence(1000))  # a quick "okay"
    assert listener.kinds("start") and not listener.kinds("speech")

    await run(voice, speak("why does recursion need a base case") + silence(1000))
    await voice.aclose()
    [speech] = listener.kinds("speech")
    assert speech[1] >= 600


async def test_end_finishes_the_utterance_without_waiting_for_silence():
    listener = Recorder()
    voice = VoiceInput(
        chain=SttChain([pocketsphinx()]), options=StreamOptions(keywords=["what is recursion"]), listener=listener
    )
    await run(voice, silence(300) + speak("what is recursion"), end=True)
    await voice.aclose()
    assert [u.text for u in listener.finals] == ["what is recursion"]


async def test_an_engine_failing_mid_utterance_hands_the_whole_utterance_to_the_next():
    listener = Recorder()
    flaky = FlakyEngine("deepgram", fail_after_frames=15)
    voice = VoiceInput(
        chain=SttChain([flaky, pocketsphinx()], health=EngineHealth()),
        options=StreamOptions(keywords=["what is recursion"]),
        listener=listener,
    )
    await run(voice, silence(300) + speak("what is recursion") + silence(1000))
    await voice.aclose()

    assert listener.kinds("switch") == [("switch", "deepgram", "pocketsphinx", "connection dropped")]
    assert [(u.text, u.provider) for u in listener.finals] == [("what is recursion", "pocketsphinx")]


async def test_when_every_engine_fails_the_utterance_is_dropped_and_the_next_one_retries(caplog):
    listener = Recorder()
    down = FlakyEngine("deepgram", fail_open=True)
    voice = VoiceInput(chain=SttChain([down]), options=StreamOptions(), listener=listener)
    await run(voice, silence(300) + speak("what is recursion") + silence(1000))
    assert listener.kinds("switch") == [("switch", "deepgram", None, "deepgram refused the connection")]
    assert listener.finals == []
    assert "dropped" in caplog.text

    await run(voice, speak("what is recursion") + silence(1000))
    await voice.aclose()
    assert down.opened == 2
    assert len(listener.kinds("switch")) == 2


async def test_browser_transcripts_are_results_of_provider_browser():
    listener = Recorder()
    voice = VoiceInput(chain=SttChain([NullSttEngine()]), options=StreamOptions(), listener=listener)
    await run(voice, silence(400))
    await voice.text_result("what is", is_final=False)
    await voice.text_result("What is recursion?", is_final=True)
    await voice.text_result("Mhm.", is_final=True)
    await voice.text_result("   ", is_final=True)
    await voice.aclose()

    assert [(p.text, p.provider, p.is_final) for p in listener.partials] == [("what is", "browser", False)]
    assert [(u.text, u.provider, u.backchannel, u.end_ms) for u in listener.finals] == [
        ("What is recursion?", "browser", False, 400),
        ("Mhm.", "browser", True, 400),
    ]


# --- the chain ----------------------------------------------------------------------------


def test_chain_without_keys_is_pocketsphinx_alone():
    chain = stt_chain_for(keys_from=types.SimpleNamespace(DEEPGRAM_API_KEY="", OPENAI_API_KEY=""))
    assert [engine.name for engine in chain.engines] == ["pocketsphinx"]


def test_chain_orders_cloud_engines_by_key_and_shares_health(monkeypatch):
    for module_name, class_name, name in (
        ("voice.providers.deepgram", "DeepgramEngine", "deepgram"),
        ("voice.providers.openai_audio", "OpenAITranscriptionEngine", "openai"),
    ):
        module = types.ModuleType(module_name)
        engine_class = type(class_name, (), {"name": name, "__init__": lambda self, *, api_key: setattr(self, "key", api_key)})
        setattr(module, class_name, engine_class)
        monkeypatch.setitem(sys.modules, module_name, module)

    both = stt_chain_for(keys_from=types.SimpleNamespace(DEEPGRAM_API_KEY="dg", OPENAI_API_KEY="sk"))
    assert [(e.name, getattr(e, "key", None)) for e in both.engines] == [
        ("deepgram", "dg"), ("openai", "sk"), ("pocketsphinx", None)
    ]
    openai_only = stt_chain_for(keys_from=types.SimpleNamespace(DEEPGRAM_API_KEY="", OPENAI_API_KEY="sk"))
    assert [e.name for e in openai_only.engines] == ["openai", "pocketsphinx"]
    assert both.health is openai_only.health


def test_a_missing_cloud_module_is_skipped_with_a_warning(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "voice.providers.deepgram", None)  # import fails
    chain = stt_chain_for(keys_from=types.SimpleNamespace(DEEPGRAM_API_KEY="dg", OPENAI_API_KEY=""))
    assert [e.name for e in chain.engines] == ["pocketsphinx"]
    assert "voice.providers.deepgram" in caplog.text


class StuckEngine:
    """An engine whose stream never answers until released: feed() must not wait for it."""

    name = "deepgram"

    def __init__(self):
        self.release = asyncio.Event()
        self.fed = 0

    async def open(self, options, *, on_partial=None):
        return self

    provider = "deepgram"

    async def feed(self, pcm: bytes) -> None:
        await self.release.wait()
        self.fed += 1

    async def finish(self) -> Transcript:
        return Transcript(text=f"{self.fed} chunks", is_final=True, provider=self.provider)

    async def aclose(self) -> None:
        return None


async def test_feed_never_waits_for_the_engine_and_nothing_is_lost():
    engine = StuckEngine()
    listener = Recorder()
    voice = VoiceInput(chain=SttChain([engine]), options=StreamOptions(), listener=listener)
    pcm = silence(300) + speak("what is recursion") + silence(1000)
    for frame in frames(pcm):
        await voice.feed(frame)  # returns although the engine has not taken anything yet
    assert [call[0] for call in listener.calls] == ["start", "speech"]
    assert engine.fed == 0

    engine.release.set()
    await voice.idle()
    await voice.aclose()
    [final] = listener.finals
    assert final.text == f"{engine.fed} chunks" and engine.fed > 50  # every queued chunk arrived


async def test_vad_alone_with_the_null_engine_reports_speech_and_no_final():
    listener = Recorder()
    voice = VoiceInput(chain=SttChain([NullSttEngine()]), options=StreamOptions(), listener=listener)
    await run(voice, silence(300) + speak("why does recursion need a base case") + silence(1000))
    await voice.text_result("why does recursion need a base case", is_final=True)
    await voice.aclose()
    assert [call[0] for call in listener.calls] == ["start", "speech", "final"]
    assert [u.provider for u in listener.finals] == ["browser"]


class SlowEngine:
    """Transcribes each utterance after `delay` seconds (a cloud engine's round trip)."""

    name = provider = "openai"

    def __init__(self, delay: float):
        self.delay = delay
        self.closed = False

    async def open(self, options, *, on_partial=None):
        return self

    async def feed(self, pcm: bytes) -> None:
        return None

    async def finish(self) -> Transcript:
        await asyncio.sleep(self.delay)
        return Transcript(text="the last words", is_final=True, provider=self.provider)

    async def aclose(self) -> None:
        self.closed = True


async def test_the_utterance_ended_just_before_the_socket_closed_is_still_transcribed():
    """The lecture mic's stop sends `audio.end` and closes its socket 100 ms later: the last
    utterance must not be dropped with the connection."""
    listener = Recorder()
    engine = SlowEngine(0.3)
    voice = VoiceInput(chain=SttChain([engine]), options=StreamOptions(), listener=listener)
    for frame in frames(silence(300) + speak("what is recursion")):
        await voice.feed(frame)
    await voice.end()
    await voice.aclose()  # no idle(): the socket went at once
    assert [u.text for u in listener.finals] == ["the last words"]
    assert engine.closed


async def test_closing_does_not_wait_long_for_a_stuck_engine(monkeypatch):
    from voice import pipeline

    monkeypatch.setattr(pipeline, "CLOSE_DRAIN_SECONDS", 0.2)
    listener = Recorder()
    engine = SlowEngine(60)
    voice = VoiceInput(chain=SttChain([engine]), options=StreamOptions(), listener=listener)
    for frame in frames(silence(300) + speak("what is recursion")):
        await voice.feed(frame)
    await voice.end()
    await asyncio.wait_for(voice.aclose(), 5)
    assert listener.finals == [] and engine.closed
