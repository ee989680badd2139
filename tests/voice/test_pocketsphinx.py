"""Pocketsphinx on real (espeak-ng) speech: exact with keywords, partials, usage, off the loop."""

from __future__ import annotations

from decimal import Decimal

import pytest
from channels.db import database_sync_to_async

from analytics.models import UsageEvent
from tests import factories
from tests.voice.audio_support import frames, silence, speak
from voice.providers.base import StreamOptions, Transcript
from voice.providers.pocketsphinx import DecoderPool, PocketsphinxEngine, arpabet, keyword_words


async def transcribe(stream, pcm: bytes) -> Transcript:
    for frame in frames(pcm):
        await stream.feed(frame)
    return await stream.finish()


async def test_a_sentence_of_keywords_decodes_exactly_with_partials_on_the_way():
    partials: list[Transcript] = []

    async def on_partial(transcript: Transcript) -> None:
        partials.append(transcript)

    engine = PocketsphinxEngine(pool=DecoderPool(1))
    stream = await engine.open(StreamOptions(keywords=["what is recursion"]), on_partial=on_partial)
    pcm = silence(200) + speak("what is recursion") + silence(300)
    final = await transcribe(stream, pcm)
    await stream.aclose()

    assert final.text == "what is recursion"
    assert (final.is_final, final.provider, final.end_ms) == (True, "pocketsphinx", len(pcm) // 32)
    assert partials and all(not p.is_final and p.provider == "pocketsphinx" for p in partials)
    assert len(partials) <= len(pcm) // 32 // 300 + 1  # at most one per 300 ms of audio


async def test_one_stream_hears_several_utterances():
    engine = PocketsphinxEngine(pool=DecoderPool(1))
    stream = await engine.open(StreamOptions(keywords=["what is recursion", "binary search"]))
    first = await transcribe(stream, silence(200) + speak("what is recursion") + silence(300))
    second = await transcribe(stream, silence(200) + speak("binary search") + silence(300))
    await stream.aclose()
    assert first.text == "what is recursion"
    assert second.text == "binary search"


async def test_without_a_free_decoder_the_stream_buffers_and_decodes_at_finish():
    pool = DecoderPool(1)
    engine = PocketsphinxEngine(pool=pool)
    busy = await engine.open(StreamOptions(keywords=["what is recursion"]))
    waiting = await engine.open(StreamOptions(keywords=["what is recursion"]))
    pcm = silence(200) + speak("what is recursion") + silence(300)
    await busy.feed(pcm[:6400])  # takes the only decoder
    for frame in frames(pcm):
        await waiting.feed(frame)  # no decoder: buffered, no waiting here
    await busy.aclose()  # gives the decoder back
    assert (await waiting.finish()).text == "what is recursion"
    await waiting.aclose()


async def test_an_empty_utterance_is_an_empty_final():
    stream = await PocketsphinxEngine(pool=DecoderPool(1)).open(StreamOptions())
    final = await stream.finish()
    assert (final.text, final.is_final, final.end_ms) == ("", True, 0)
    await stream.aclose()


def test_words_missing_from_the_dictionary_get_arpabet_from_espeak():
    assert arpabet("recursion") == "R IH K ER SH AH N"
    assert arpabet("memoization").split()[:2] == ["M", "EH"]
    assert arpabet("not a word!") is None
    assert keyword_words(["Binary search", "binary tree", "O(n) time"]) == [
        "binary", "search", "tree", "o", "n", "time"
    ]


@pytest.mark.django_db(transaction=True)
async def test_usage_is_recorded_when_the_stream_has_a_tenant():
    tenant = await database_sync_to_async(factories.TenantFactory)()
    options = StreamOptions(keywords=["what is recursion"], usage={"tenant_id": tenant.id})
    stream = await PocketsphinxEngine(pool=DecoderPool(1)).open(options)
    pcm = silence(200) + speak("what is recursion") + silence(300)
    await transcribe(stream, pcm)
    await stream.aclose()

    events = await database_sync_to_async(list)(UsageEvent.objects.filter(tenant_id=tenant.id))
    assert len(events) == 1
    event = events[0]
    assert (event.kind, event.provider, event.cost) == ("stt", "pocketsphinx", Decimal(0))
    assert event.units == (Decimal(len(pcm) // 32) / 1000).quantize(Decimal("0.001"))


async def test_a_decoder_is_kept_in_reserve_for_streams_that_buffered():
    pool = DecoderPool(2, reserve=1)
    engine = PocketsphinxEngine(pool=pool)
    options = StreamOptions(keywords=["what is recursion"])
    first, second = await engine.open(options), await engine.open(options)
    pcm = silence(200) + speak("what is recursion") + silence(300)
    await first.feed(pcm[:6400])  # streams: takes a decoder
    assert not pool.available()  # the other one is the reserve
    for frame in frames(pcm):
        await second.feed(frame)  # buffers
    assert (await second.finish()).text == "what is recursion"  # the reserve, not first's decoder
    for frame in frames(pcm[6400:]):
        await first.feed(frame)
    assert (await first.finish()).text == "what is recursion"
    await first.aclose()
    await second.aclose()


async def test_a_cancelled_close_still_returns_its_decoder_slot():
    """A consumer killed while its stream closes must not leak the slot: the pool would shrink
    for good (and streams wait for a decoder that never comes back)."""
    import asyncio

    from voice.providers.pocketsphinx import PocketsphinxStream

    class HangingSlot:
        closed = False

        async def call(self, *args, **kwargs):
            await asyncio.Event().wait()

        def close(self):
            self.closed = True

    pool = DecoderPool(2, reserve=0)
    pool._in_use = 1  # the stream's slot
    stream = PocketsphinxStream(StreamOptions(), on_partial=None, pool=pool)
    slot = stream._decoder = HangingSlot()
    closing = asyncio.create_task(stream.aclose())
    await asyncio.sleep(0.01)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert pool._in_use == 0 and slot.closed  # returned, and closed: its state is unknown
