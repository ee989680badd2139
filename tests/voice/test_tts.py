"""Offline TTS engines (piper, espeak-ng) and the choice of engines and voices."""

from __future__ import annotations

import shutil
import sys
import types

import numpy as np
import pytest
from channels.db import database_sync_to_async
from django.test import override_settings

from analytics.models import UsageEvent
from tests import factories
from voice.providers.base import TtsEngine, TtsUnavailable
from voice.providers.espeak import EspeakEngine
from voice.providers.piper import PiperEngine
from voice.tts import tts_choice_for

SENTENCE = "The derivative tells us how fast a function changes."


async def speak(engine, text: str = SENTENCE, **kwargs) -> tuple[list[bytes], bytes]:
    chunks = [chunk async for chunk in engine.synthesize(text, **kwargs)]
    return chunks, b"".join(chunks)


def assert_speech(pcm: bytes, sample_rate: int, *, min_seconds: float, max_seconds: float) -> None:
    assert len(pcm) % 2 == 0
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    seconds = len(samples) / sample_rate
    assert min_seconds < seconds < max_seconds, seconds
    rms = float(np.sqrt(np.mean(samples**2)))
    assert rms > 300, rms  # speech, not silence or a click


async def test_piper_speaks_a_sentence_as_pcm16_at_its_rate():
    engine = PiperEngine()
    assert isinstance(engine, TtsEngine)
    assert engine.sample_rate == 22050
    chunks, pcm = await speak(engine)
    assert chunks
    # ~9 words: well over a second, well under six.
    assert_speech(pcm, engine.sample_rate, min_seconds=1.2, max_seconds=6)


async def test_piper_yields_a_chunk_per_sentence():
    chunks, _ = await speak(PiperEngine(), "One sentence here. And a second one.")
    assert len(chunks) == 2


async def test_piper_serves_concurrent_sentences_from_one_model():
    import asyncio

    texts = ["The first of three.", "A second sentence, a little longer than the first.", "Third."]
    results = await asyncio.gather(*(speak(PiperEngine(), text) for text in texts))
    lengths = [len(pcm) for _, pcm in results]
    for _, pcm in results:
        assert_speech(pcm, 22050, min_seconds=0.3, max_seconds=6)
    assert lengths[1] > lengths[0] > lengths[2]  # each got its own sentence's audio


async def test_piper_with_an_unknown_voice_speaks_with_the_bundled_one():
    _, pcm = await speak(PiperEngine(), "Hello there.", voice="nobody")
    assert_speech(pcm, 22050, min_seconds=0.3, max_seconds=3)


async def test_piper_without_its_model_is_unavailable(tmp_path):
    engine = PiperEngine(model_path=tmp_path / "missing.onnx")
    with pytest.raises(TtsUnavailable):
        await speak(engine)
    with pytest.raises(TtsUnavailable):
        engine.sample_rate  # noqa: B018


@pytest.mark.skipif(not shutil.which("espeak-ng"), reason="espeak-ng is not installed")
async def test_espeak_speaks_a_sentence_as_pcm16_at_22050():
    engine = EspeakEngine()
    assert isinstance(engine, TtsEngine)
    chunks, pcm = await speak(engine)
    assert len(chunks) >= 1
    assert_speech(pcm, engine.sample_rate, min_seconds=1.2, max_seconds=8)


@pytest.mark.skipif(not shutil.which("espeak-ng"), reason="espeak-ng is not installed")
async def test_espeak_takes_text_that_looks_like_options_as_text():
    _, pcm = await speak(EspeakEngine(), "--help -v xx")
    assert_speech(pcm, 22050, min_seconds=0.3, max_seconds=5)


@pytest.mark.skipif(not shutil.which("espeak-ng"), reason="espeak-ng is not installed")
async def test_espeak_with_an_unknown_voice_is_unavailable():
    with pytest.raises(TtsUnavailable):
        await speak(EspeakEngine(), voice="zz-nonexistent")


@pytest.mark.skipif(not shutil.which("espeak-ng"), reason="espeak-ng is not installed")
async def test_espeak_stopped_after_its_first_chunk_leaves_no_process(monkeypatch):
    import asyncio

    started = []
    real = asyncio.create_subprocess_exec

    async def recording(*args, **kwargs):
        started.append(await real(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(asyncio, "create_subprocess_exec", recording)
    stream = EspeakEngine().synthesize("A long sentence that keeps going. " * 20)
    assert await anext(stream)
    await stream.aclose()
    assert started[0].returncode is not None  # killed and reaped


async def test_espeak_without_its_binary_is_unavailable(tmp_path):
    with pytest.raises(TtsUnavailable):
        await speak(EspeakEngine(binary=str(tmp_path / "espeak-ng")))


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not shutil.which("espeak-ng"), reason="espeak-ng is not installed")
async def test_offline_speech_is_recorded_as_free_tts_usage():
    tenant = await database_sync_to_async(factories.TenantFactory)()
    usage = {"tenant_id": tenant.pk, "session_id": None, "user_id": None}
    await speak(EspeakEngine(), "Short one.", usage=usage)
    await speak(PiperEngine(), "Short one.", usage=usage)
    events = await database_sync_to_async(
        lambda: list(UsageEvent.objects.filter(tenant=tenant).order_by("provider").values())
    )()
    assert [(e["kind"], e["provider"], int(e["units"]), e["cost"], e["outcome"]) for e in events] == [
        ("tts", "espeak", 10, 0, "ok"),
        ("tts", "piper", 10, 0, "ok"),
    ]


# --- tts_choice_for ---------------------------------------------------------------------------------


class Persona:
    voice_openai = "nova"
    voice_piper = "joe"
    voice_browser = "Samantha"


def names(choice) -> list[str]:
    return [engine.name for engine in choice.engines]


@override_settings(OPENAI_API_KEY="")
def test_auto_without_an_openai_key_is_piper_then_espeak_then_the_browser():
    choice = tts_choice_for(persona=Persona(), mode="auto")
    assert names(choice) == ["piper", "espeak"]
    assert choice.browser and choice.browser_voice == "Samantha"
    assert choice.voice_for("piper") == "joe"


class FakeOpenAISpeech:
    name = "openai"
    sample_rate = 24000

    def __init__(self, *, usage=None):
        self.usage = usage

    async def synthesize(self, text, *, voice=""):
        yield b"\x00\x00"


@override_settings(OPENAI_API_KEY="sk-test")
def test_auto_with_an_openai_key_puts_openai_first_with_the_usage_context(monkeypatch):
    monkeypatch.setitem(
        sys.modules, "voice.providers.openai_audio", types.SimpleNamespace(OpenAISpeechEngine=FakeOpenAISpeech)
    )
    choice = tts_choice_for(persona=Persona(), mode="auto", usage={"tenant_id": 4})
    assert names(choice) == ["openai", "piper", "espeak"]
    assert choice.voice_for("openai") == "nova"
    assert choice.engines[0].usage == {"tenant_id": 4}


@override_settings(OPENAI_API_KEY="sk-test")
def test_auto_without_the_openai_engine_module_uses_the_offline_voices(monkeypatch):
    monkeypatch.setitem(sys.modules, "voice.providers.openai_audio", None)  # import fails
    assert names(tts_choice_for(mode="auto")) == ["piper", "espeak"]


@override_settings(OPENAI_API_KEY="sk-test")
def test_server_mode_is_offline_engines_only():
    assert names(tts_choice_for(mode="server")) == ["piper", "espeak"]


def test_browser_mode_has_no_server_engine():
    choice = tts_choice_for(persona=Persona(), mode="browser")
    assert choice.engines == () and choice.browser and not choice.off
    assert choice.browser_voice == "Samantha"


def test_off_mode_speaks_nothing():
    assert tts_choice_for(mode="off").off


@override_settings(VOICE_TTS="server")
def test_the_mode_defaults_to_the_setting():
    assert tts_choice_for().mode == "server"


def test_an_unknown_mode_is_a_clear_error():
    with pytest.raises(ValueError, match="VOICE_TTS must be one of"):
        tts_choice_for(mode="loud")


def test_without_a_persona_the_default_voices_are_used():
    choice = tts_choice_for(mode="server")
    assert choice.voice_for("piper") == "" and choice.browser_voice == ""


def test_a_wrong_voice_tts_setting_is_reported_by_the_system_check(settings):
    from voice.checks import check_voice_output

    settings.VOICE_TTS = "loud"
    assert [problem.id for problem in check_voice_output(None)] == ["voice.E001"]
    settings.VOICE_TTS = "server"
    assert check_voice_output(None) == []  # piper and espeak-ng are here
