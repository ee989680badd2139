"""OpenAI transcription and speech against the local stand-in, through the real openai SDK; and the
STT chain falling from a Deepgram stream that dies mid-utterance to OpenAI without losing audio."""

from __future__ import annotations

from decimal import Decimal

import pytest

from courses.usage import provider_called
from tests.support.deepgram_standin import DeepgramStandin, Drop, frames, speech
from tests.support.openai_standin import Hang, OpenAIStandin, Speech, Status, Transcription, tone_pcm
from voice.providers.base import StreamOptions, SttChain, SttUnavailable, TtsUnavailable
from voice.providers.deepgram import DeepgramEngine
from voice.providers.openai_audio import OpenAISpeechEngine, OpenAITranscriptionEngine


@pytest.fixture
def standin(settings):
    with OpenAIStandin() as running:
        settings.OPENAI_API_KEY = "sk-test-key"
        settings.OPENAI_BASE_URL = running.base_url
        settings.OPENAI_TRANSCRIBE_MODEL = "gpt-4o-mini-transcribe"
        settings.OPENAI_TTS_MODEL = "gpt-4o-mini-tts"
        settings.OPENAI_TTS_VOICE = "alloy"
        settings.OPENAI_AUDIO_TIMEOUT_SECONDS = 10.0
        yield running


async def transcribe(pcm: bytes, options: StreamOptions | None = None, **engine_kwargs):
    stream = await OpenAITranscriptionEngine(**engine_kwargs).open(options or StreamOptions())
    try:
        for frame in frames(pcm):
            await stream.feed(frame)
        return await stream.finish()
    finally:
        await stream.aclose()


async def speak(engine: OpenAISpeechEngine, text: str, voice: str = "") -> list[bytes]:
    return [chunk async for chunk in engine.synthesize(text, voice=voice)]


# --- transcription ------------------------------------------------------------------------------


async def test_an_utterance_is_posted_as_a_wav_with_the_model_and_a_prompt_of_keywords(standin, settings):
    settings.OPENAI_TRANSCRIBE_MODEL = "whisper-large-v3"
    standin.script_transcriptions(Transcription(" Chlorophyll absorbs light. "))
    utterance = speech(750)

    result = await transcribe(utterance, StreamOptions(keywords=["chlorophyll", "photosystem II"]))

    sent = standin.transcriptions[-1]
    assert sent["model"] == "whisper-large-v3"
    assert sent["prompt"] == "Terms: chlorophyll, photosystem II."
    assert sent["language"] == "en"
    assert sent["response_format"] == "json"
    assert (sent["sample_rate"], sent["channels"], sent["sample_width"]) == (16000, 1, 2)
    assert sent["duration_ms"] == 750
    assert sent["pcm"] == utterance
    assert sent["headers"]["authorization"] == "Bearer sk-test-key"
    assert (result.text, result.is_final, result.provider, result.end_ms) == (
        "Chlorophyll absorbs light.",
        True,
        "openai",
        750,
    )


async def test_utterances_are_sent_one_request_each_and_no_keywords_means_no_prompt(standin):
    standin.script_transcriptions(Transcription("one"), Transcription("two"))
    stream = await OpenAITranscriptionEngine().open(StreamOptions())
    results = []
    for ms in (300, 500):
        await stream.feed(speech(ms))
        results.append((await stream.finish()).text)
    await stream.aclose()

    assert results == ["one", "two"]
    assert [sent["duration_ms"] for sent in standin.transcriptions] == [300, 500]
    assert all(sent["prompt"] is None for sent in standin.transcriptions)


async def test_an_empty_utterance_sends_nothing(standin):
    result = await transcribe(b"")
    assert result.text == "" and result.is_final
    assert standin.transcriptions == []


@pytest.mark.parametrize("behaviour", [Status(401), Status(429), Status(500), Hang(5)])
async def test_errors_and_timeouts_are_unavailable(standin, settings, behaviour):
    settings.OPENAI_AUDIO_TIMEOUT_SECONDS = 0.3
    standin.script_transcriptions(behaviour)
    with pytest.raises(SttUnavailable, match="openai transcription"):
        await transcribe(speech(200))


async def test_no_key_is_unavailable_at_open(standin, settings):
    settings.OPENAI_API_KEY = ""
    with pytest.raises(SttUnavailable, match="OPENAI_API_KEY"):
        await OpenAITranscriptionEngine().open(StreamOptions())


async def test_an_unreachable_server_is_unavailable(settings):
    settings.OPENAI_API_KEY = "sk-test-key"
    with pytest.raises(SttUnavailable, match="connection failed"):
        await transcribe(speech(200), base_url="http://127.0.0.1:9/v1")


# --- the chain ----------------------------------------------------------------------------------


async def test_a_deepgram_stream_dying_mid_utterance_falls_back_to_openai_with_the_whole_utterance(
    standin, settings
):
    settings.DEEPGRAM_API_KEY = "dg-test-key"
    settings.DEEPGRAM_CONNECT_TIMEOUT_SECONDS = 10.0
    standin.script_transcriptions(Transcription("The whole question arrived."))
    switches = []

    async def on_switch(old, new, reason):
        switches.append((old, new))

    with DeepgramStandin() as deepgram:
        # The first connection drops, the reconnect drops too: Deepgram gives up mid-utterance.
        deepgram.script_connections(Drop(after_bytes=6_000), Drop(after_bytes=6_000))
        chain = SttChain([DeepgramEngine(base_url=deepgram.base_url), OpenAITranscriptionEngine()])
        stream = await chain.open(StreamOptions(), on_switch=on_switch)
        utterance = speech(900)
        for frame in frames(utterance):
            await stream.feed(frame)
        result = await stream.finish()
        await stream.aclose()
        assert len(deepgram.connections) == 2 and all(c.dropped for c in deepgram.connections)

    assert switches == [("deepgram", "openai")]
    assert (result.text, result.provider) == ("The whole question arrived.", "openai")
    assert standin.transcriptions[-1]["pcm"] == utterance  # nothing lost, nothing doubled


# --- speech -------------------------------------------------------------------------------------


async def test_speech_streams_pcm_chunks_as_they_arrive(standin, settings):
    settings.OPENAI_TTS_MODEL = "tts-1"
    pcm = tone_pcm(400)
    standin.script_speech(Speech(pcm, chunks=4, chunk_delay=0.2))
    engine = OpenAISpeechEngine()
    received = []
    written_when_first_arrived = None

    async for chunk in engine.synthesize("Light drives the reaction.", voice="nova"):
        if written_when_first_arrived is None:
            written_when_first_arrived = standin.speeches[-1]["chunks_written"]
        received.append(chunk)

    assert engine.sample_rate == 24000
    assert b"".join(received) == pcm
    assert len(received) > 1
    assert written_when_first_arrived < 4  # the first chunk came before the server had finished
    sent = standin.speeches[-1]
    assert (sent["model"], sent["voice"], sent["input"], sent["response_format"]) == (
        "tts-1",
        "nova",
        "Light drives the reaction.",
        "pcm",
    )


async def test_speech_without_a_persona_voice_uses_the_default_voice(standin, settings):
    settings.OPENAI_TTS_VOICE = "shimmer"
    await speak(OpenAISpeechEngine(), "Hello.")
    assert standin.speeches[-1]["voice"] == "shimmer"


async def test_speech_chunks_hold_whole_samples(standin):
    pcm = bytes(range(24))
    standin.script_speech(Speech(pcm, chunks=8))  # 3-byte pieces: samples split across chunks
    chunks = await speak(OpenAISpeechEngine(), "Odd pieces.")
    assert b"".join(chunks) == pcm
    assert all(len(chunk) % 2 == 0 for chunk in chunks)


@pytest.mark.parametrize("behaviour", [Status(401), Status(500), Hang(5)])
async def test_speech_errors_are_unavailable_before_any_audio(standin, settings, behaviour):
    settings.OPENAI_AUDIO_TIMEOUT_SECONDS = 0.3
    standin.script_speech(behaviour)
    with pytest.raises(TtsUnavailable, match="openai speech"):
        await speak(OpenAISpeechEngine(), "Hello.")


async def test_speech_without_a_key_is_unavailable(standin, settings):
    settings.OPENAI_API_KEY = ""
    with pytest.raises(TtsUnavailable, match="OPENAI_API_KEY"):
        await speak(OpenAISpeechEngine(), "Hello.")
    assert standin.speeches == []


# --- usage --------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_transcription_and_speech_record_usage_with_units_and_cost(standin, settings, tenant, course):
    from analytics.models import UsageEvent

    settings.OPENAI_TRANSCRIBE_COST_PER_MINUTE = 0.006
    settings.OPENAI_TTS_COST_PER_1K_CHARS = 0.015
    context = {"tenant_id": tenant.id, "course_id": course.id}

    await transcribe(speech(2000), StreamOptions(usage=context))
    tts = OpenAISpeechEngine(usage=context)
    await speak(tts, "x" * 200)
    await tts.drain()
    standin.script_transcriptions(Status(500))
    with pytest.raises(SttUnavailable):
        await transcribe(speech(500), StreamOptions(usage=context))

    events = [event async for event in UsageEvent.objects.order_by("id")]
    assert [(e.kind, e.provider, e.outcome, e.units, e.cost) for e in events] == [
        ("stt", "openai", "ok", Decimal("2"), Decimal("0.0002")),
        ("tts", "openai", "ok", Decimal("200"), Decimal("0.003")),
        ("stt", "openai", "error", Decimal("0"), Decimal("0")),
    ]
    assert events[0].model == "gpt-4o-mini-transcribe" and events[1].model == "gpt-4o-mini-tts"
    assert all(e.course_id == course.id for e in events)
    assert "500" in events[2].error


@pytest.mark.django_db(transaction=True)
async def test_speech_the_listener_stopped_is_recorded_as_cancelled_with_all_its_characters(standin, tenant):
    from analytics.models import UsageEvent

    standin.script_speech(Speech(tone_pcm(400), chunks=4, chunk_delay=0.05))
    tts = OpenAISpeechEngine(usage={"tenant_id": tenant.id})
    chunks = tts.synthesize("Stop me after the first chunk.")
    await anext(chunks)
    await chunks.aclose()
    await tts.drain()

    event = await UsageEvent.objects.aget()
    assert (event.kind, event.outcome, event.units) == ("tts", "cancelled", Decimal(30))


async def test_nothing_is_announced_without_a_tenant(standin):
    heard = []

    def receiver(sender, **kwargs):
        heard.append(kwargs)

    provider_called.connect(receiver)
    try:
        await transcribe(speech(200))
        await speak(OpenAISpeechEngine(), "Hello.")
    finally:
        provider_called.disconnect(receiver)
    assert heard == []
