"""Deepgram live transcription against the local stand-in, through the real deepgram SDK."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from tests.support.deepgram_standin import (
    DeepgramStandin,
    Drop,
    HangFinalize,
    HangHandshake,
    Refuse,
    frames,
    silence,
    speech,
)
from voice.providers.base import StreamOptions, SttUnavailable
from voice.providers.deepgram import DeepgramEngine


@pytest.fixture(autouse=True)
def _deepgram_settings(settings):
    settings.DEEPGRAM_API_KEY = "dg-test-key"
    settings.DEEPGRAM_MODEL = "nova-3"
    settings.DEEPGRAM_ENDPOINTING_MS = 300
    settings.DEEPGRAM_KEEPALIVE_SECONDS = 5.0
    # Generous: guards against a hang on a loaded machine; tests of the timeouts set short ones.
    settings.DEEPGRAM_CONNECT_TIMEOUT_SECONDS = 10.0
    settings.DEEPGRAM_FINALIZE_TIMEOUT_SECONDS = 10.0


@pytest.fixture
def standin():
    with DeepgramStandin() as running:
        yield running


def engine(standin: DeepgramStandin) -> DeepgramEngine:
    return DeepgramEngine(base_url=standin.base_url)


def settled(standin: DeepgramStandin) -> None:
    """Wait until the server thread has handled every connection to its end (messages recorded)."""
    for connection in standin.connections:
        assert connection.closed.wait(10)


async def say(stream, pcm: bytes) -> None:
    for frame in frames(pcm):
        await stream.feed(frame)


async def test_connect_sends_key_model_audio_format_endpointing_and_keyterms(standin):
    stream = await engine(standin).open(StreamOptions(keywords=["photosynthesis", "chlorophyll a"]))
    await stream.aclose()
    settled(standin)

    sent = standin.last
    assert sent.path == "/v1/listen"
    assert sent.headers["authorization"] == "Token dg-test-key"
    assert {name: sent.param(name) for name in ("model", "encoding", "sample_rate", "channels")} == {
        "model": "nova-3",
        "encoding": "linear16",
        "sample_rate": "16000",
        "channels": "1",
    }
    assert sent.param("interim_results") == "true"
    assert sent.param("endpointing") == "300"
    assert sent.param("smart_format") == "true"
    assert sent.params["keyterm"] == ["photosynthesis", "chlorophyll a"]
    assert sent.count("CloseStream") == 1


async def test_older_models_get_keywords_instead_of_keyterms(standin, settings):
    settings.DEEPGRAM_MODEL = "nova-2"
    stream = await engine(standin).open(StreamOptions(keywords=["mitosis"]))
    await stream.aclose()
    settled(standin)
    assert standin.last.params["keywords"] == ["mitosis"]
    assert "keyterm" not in standin.last.params


async def test_interim_results_come_as_partials_then_finish_gives_the_final(standin):
    standin.script("Photosynthesis makes sugar.")
    partials = []

    async def on_partial(transcript):
        partials.append(transcript)

    stream = await engine(standin).open(StreamOptions(), on_partial=on_partial)
    await say(stream, speech(600))
    final = await stream.finish()
    await stream.aclose()
    settled(standin)

    assert [p.text for p in partials] == ["Photosynthesis"]
    assert all(not p.is_final and p.provider == "deepgram" for p in partials)
    assert final.text == "Photosynthesis makes sugar."
    assert final.is_final and final.provider == "deepgram"
    assert final.end_ms == 600
    assert standin.last.count("Finalize") == 1
    assert len(standin.last.audio) == len(speech(600))


async def test_pieces_cut_by_endpointing_are_joined_and_utterances_stay_apart(standin):
    standin.script("First part.", "second part.", "Another question?")
    stream = await engine(standin).open(StreamOptions())

    await say(stream, speech(400) + silence(400) + speech(400))  # a pause inside the utterance
    first = await stream.finish()
    await say(stream, speech(300))
    second = await stream.finish()
    await stream.aclose()
    settled(standin)

    assert first.text == "First part. second part."
    assert second.text == "Another question?"
    assert (second.start_ms, second.end_ms) == (0, 300)  # times are from the utterance's start
    results = standin.last.results
    finals = [r for r in results if r["is_final"] and r["channel"]["alternatives"][0]["transcript"]]
    assert [(r["speech_final"], r["from_finalize"]) for r in finals] == [
        (True, False),
        (False, True),
        (False, True),
    ]
    assert standin.connections == [standin.last]  # one connection for both


async def test_finals_covering_all_audio_finish_without_waiting_for_a_from_finalize(settings):
    # Deepgram answers Finalize only when it still holds audio; here endpointing already covered it.
    settings.DEEPGRAM_FINALIZE_TIMEOUT_SECONDS = 60.0
    with DeepgramStandin(["All heard already."], answer_idle_finalize=False) as standin:
        stream = await engine(standin).open(StreamOptions())
        await say(stream, speech(400) + silence(300))
        final = await asyncio.wait_for(stream.finish(), 10)  # far less than the 60 s timeout
        await stream.aclose()
        settled(standin)
        assert standin.last.count("Finalize") == 1
        assert not any(result["from_finalize"] for result in standin.last.results)
    assert final.text == "All heard already."


async def test_keep_alive_goes_up_while_idle(standin, settings):
    settings.DEEPGRAM_KEEPALIVE_SECONDS = 0.1
    stream = await engine(standin).open(StreamOptions())
    for _ in range(500):  # up to 10 s on a loaded machine; done after ~0.2 s normally
        if standin.last.count("KeepAlive") >= 2:
            break
        await asyncio.sleep(0.02)
    await stream.aclose()
    settled(standin)
    assert standin.last.count("KeepAlive") >= 2


@pytest.mark.parametrize("after_bytes", [8_000, len(speech(500))])  # mid-utterance; at its last frame
async def test_a_dropped_connection_reconnects_and_replays_the_utterance(standin, after_bytes):
    standin.script_connections(Drop(after_bytes=after_bytes))
    standin.script("Nothing was lost.")
    stream = await engine(standin).open(StreamOptions())

    utterance = speech(500)
    await say(stream, utterance)
    final = await stream.finish()
    await stream.aclose()
    settled(standin)

    first, second = standin.connections
    assert first.dropped
    assert bytes(second.audio) == utterance  # the whole utterance, once
    assert final.text == "Nothing was lost."


async def test_a_connection_lost_between_utterances_is_reopened_for_the_next(standin):
    standin.script("First.", "Second.")
    stream = await engine(standin).open(StreamOptions())
    await say(stream, speech(300))
    first = await stream.finish()

    standin.drop_connections()
    await asyncio.sleep(0.05)
    await say(stream, speech(300))
    second = await stream.finish()
    await stream.aclose()
    settled(standin)

    assert (first.text, second.text) == ("First.", "Second.")
    assert len(standin.connections) == 2
    assert bytes(standin.connections[1].audio) == speech(300)


async def test_a_second_drop_in_one_utterance_raises_unavailable(standin):
    standin.script_connections(Drop(after_bytes=4_000), Drop(after_bytes=4_000))
    stream = await engine(standin).open(StreamOptions())
    with pytest.raises(SttUnavailable):
        await say(stream, speech(500))
        await stream.finish()
    await stream.aclose()
    settled(standin)


@pytest.mark.parametrize("status", [401, 403, 500])
async def test_a_refused_connection_is_unavailable(standin, status):
    standin.script_connections(Refuse(status))
    with pytest.raises(SttUnavailable, match=str(status)):
        await engine(standin).open(StreamOptions())


async def test_a_hung_handshake_times_out_as_unavailable(standin, settings):
    settings.DEEPGRAM_CONNECT_TIMEOUT_SECONDS = 0.2
    standin.script_connections(HangHandshake())
    with pytest.raises(SttUnavailable, match="no connection"):
        await engine(standin).open(StreamOptions())


async def test_no_final_after_finalize_is_unavailable(standin, settings):
    settings.DEEPGRAM_FINALIZE_TIMEOUT_SECONDS = 0.2
    standin.script_connections(HangFinalize())
    stream = await engine(standin).open(StreamOptions())
    await say(stream, speech(200))
    with pytest.raises(SttUnavailable, match="no final"):
        await stream.finish()
    await stream.aclose()
    settled(standin)


async def test_no_key_is_unavailable_without_a_connection(standin, settings):
    settings.DEEPGRAM_API_KEY = ""
    with pytest.raises(SttUnavailable, match="DEEPGRAM_API_KEY"):
        await DeepgramEngine(base_url=standin.base_url).open(StreamOptions())
    assert standin.connections == []


async def test_an_unreachable_host_is_unavailable():
    with pytest.raises(SttUnavailable):
        await DeepgramEngine(base_url="ws://127.0.0.1:9").open(StreamOptions())


@pytest.mark.django_db(transaction=True)
async def test_each_utterance_records_its_audio_seconds_and_cost(standin, settings, tenant, course):
    from analytics.models import UsageEvent

    settings.DEEPGRAM_COST_PER_MINUTE = 0.006
    stream = await engine(standin).open(StreamOptions(usage={"tenant_id": tenant.id, "course_id": course.id}))
    await say(stream, speech(1500))
    await stream.finish()
    await stream.aclose()
    settled(standin)

    event = await UsageEvent.objects.aget()
    assert (event.kind, event.provider, event.model, event.outcome) == ("stt", "deepgram", "nova-3", "ok")
    assert event.units == Decimal("1.5")
    assert event.cost == Decimal("0.00015")
    assert event.course_id == course.id
