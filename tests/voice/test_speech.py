"""Speaking a streamed reply: sentence splitting, ReplySpeaker's events, fallback, stop, sharing."""

from __future__ import annotations

import asyncio
import json

import pytest

from voice.providers.base import TtsUnavailable
from voice.speech import MAX_BINARY_FRAME, ReplySpeaker, SynthesisCache, sentences, speakable
from voice.tts import TtsChoice, tts_choice_for

# --- sentences ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("buffer", "complete", "rest"),
    [
        ("Hello there. How are", ["Hello there."], "How are"),
        ("Is it? Yes! Good. ", ["Is it?", "Yes!", "Good."], ""),
        ("Pi is about 3.14 and e is 2.71. Next", ["Pi is about 3.14 and e is 2.71."], "Next"),
        ("The answer is 3.", [], "The answer is 3."),  # 3. or 3.14? wait for more
        ("Use a prior, e.g. a flat one. Or", ["Use a prior, e.g. a flat one."], "Or"),
        ("That is, i.e. the mean. Ok", ["That is, i.e. the mean."], "Ok"),
        ("Ask Dr. Smith and Prof. Jones. They know", ["Ask Dr. Smith and Prof. Jones."], "They know"),
        ("Works by J. S. Bach. More", ["Works by J. S. Bach."], "More"),
        ("See the notes, p. 12 for this. More", ["See the notes, p. 12 for this."], "More"),
        ('He said "stop." Then left', ['He said "stop."'], "Then left"),
        ("First line\nSecond line\nThird", ["First line", "Second line"], "Third"),
        ("Wait... really? Yes", ["Wait...", "really?"], "Yes"),
    ],
)
def test_sentences_are_cut_at_their_ends_only(buffer, complete, rest):
    assert sentences(buffer) == (complete, rest)


@pytest.mark.parametrize(
    ("buffer", "spoken"),
    [
        ("Gradient descent [1] converges. ", ["Gradient descent converges."]),
        ("It converges.[2] Then", ["It converges.", "Then"]),
        ("Both [1, 3] agree. ", ["Both agree."]),
        ("**Bold** and *italic* and `code`. ", ["Bold and italic and code."]),
        ("## Heading\n- first point\n2. second point\n", ["Heading", "first point", "second point"]),
        ("Read [the notes](https://example.org/notes.pdf). ", ["Read the notes."]),
        ("Run this:\n```python\nx = 1. y = 2.\n```\nThen check. ", ["Run this:", "Then check."]),
        ("Say <b>this</b>. ", ["Say this."]),
        ("```\nonly code\n```\n", []),
    ],
)
def test_what_is_only_for_the_eye_is_not_spoken(buffer, spoken):
    assert sentences(buffer, final=True)[0] == spoken


def test_text_inside_an_unclosed_code_fence_waits():
    complete, rest = sentences("Look. ```py\nx = 1. y")
    assert complete == ["Look."]
    assert sentences(rest + " = 2.\n``` Done. ")[0] == ["Done."]


def test_a_citation_cut_between_deltas_is_still_removed():
    complete, rest = sentences("It holds [")
    complete2, rest2 = sentences(rest + "12]. Next")
    assert complete == [] and complete2 == ["It holds."] and rest2 == "Next"


def test_split_markup_joins_up_across_deltas():
    _, rest = sentences("This is **very")
    assert sentences(rest + " important**. ")[0] == ["This is very important."]


def test_final_flushes_the_rest():
    assert sentences("No full stop at the end", final=True) == (["No full stop at the end"], "")
    assert sentences("   ", final=True) == ([], "")


def test_a_very_long_run_is_cut_at_a_clause():
    buffer = "word, " * 80
    complete, rest = sentences(buffer)
    assert len(complete) == 1 and complete[0].endswith(",")
    assert len(complete[0]) <= 300
    assert (complete[0] + " " + rest).split() == buffer.split()  # nothing lost


def test_speakable_keeps_plain_text():
    assert speakable("Plain text, 3.14 and x_y.") == "Plain text, 3.14 and x_y."


# --- ReplySpeaker ------------------------------------------------------------------------------------


class FakeEngine:
    """Speaks `bytes_per_char` bytes of PCM per character, in two chunks; can fail or be held."""

    def __init__(self, name="fake", *, sample_rate=16000, fail=False, bytes_per_char=400, hold=None):
        self.name = name
        self.sample_rate = sample_rate
        self.fail = fail
        self.bytes_per_char = bytes_per_char
        self.hold = hold  # an asyncio.Event: the second chunk waits for it
        self.calls: list[tuple[str, str]] = []
        self.cancelled = 0

    async def synthesize(self, text, *, voice=""):
        self.calls.append((text, voice))
        if self.fail:
            raise TtsUnavailable(f"{self.name} is down")
        pcm = (b"\x01\x02" * len(text) * self.bytes_per_char)[: len(text) * self.bytes_per_char]
        half = len(pcm) // 2 + 1  # an odd cut: the speaker must keep samples whole
        yield pcm[:half]
        try:
            if self.hold is not None:
                await self.hold.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        yield pcm[half:]


class Client:
    """What the socket received, in order: ("event", type, payload) or ("bytes", data)."""

    def __init__(self):
        self.log: list[tuple] = []
        self._changed = asyncio.Event()

    async def send_event(self, type_: str, payload: dict) -> None:
        self.log.append(("event", type_, payload))
        self._changed.set()

    async def send_bytes(self, data: bytes) -> None:
        self.log.append(("bytes", data))
        self._changed.set()

    def events(self, type_: str | None = None) -> list[dict]:
        return [e[2] for e in self.log if e[0] == "event" and (type_ is None or e[1] == type_)]

    def types(self) -> list[str]:
        return [e[1] for e in self.log if e[0] == "event"]

    def audio(self) -> bytes:
        return b"".join(e[1] for e in self.log if e[0] == "bytes")

    async def until(self, condition, timeout: float = 10.0) -> None:
        async def wait() -> None:
            while not condition():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)


def speaker_for(*engines, browser=True, browser_voice="", cache=None) -> tuple[ReplySpeaker, Client]:
    client = Client()
    choice = TtsChoice(engines=tuple(engines), browser=browser, browser_voice=browser_voice,
                       voices={"fake": "v1"})
    speaker = ReplySpeaker(choice=choice, send_event=client.send_event, send_bytes=client.send_bytes,
                           cache=cache or SynthesisCache())
    return speaker, client


async def test_the_first_sentence_is_heard_before_the_reply_ends():
    engine = FakeEngine()
    speaker, client = speaker_for(engine)
    await speaker.feed(7, "Hello ")
    await speaker.feed(7, "there. The second")
    await client.until(lambda: len(client.audio()) == len("Hello there.") * 400)
    assert client.types() == ["tts.audio"]
    assert client.events("tts.audio")[0] == {
        "message_id": 7, "sentence": 1, "format": "pcm16", "sample_rate": 16000, "channels": 1,
        "engine": "fake", "text": "Hello there.",
    }
    assert engine.calls == [("Hello there.", "v1")]
    assert speaker.speaking

    await speaker.feed(7, " sentence is longer.")
    await speaker.finish(7, "Hello there. The second sentence is longer.")
    await client.until(lambda: "tts.end" in client.types())
    assert client.types() == ["tts.audio", "tts.audio", "tts.end"]
    assert client.events("tts.audio")[1]["sentence"] == 2
    assert client.events("tts.end") == [{"message_id": 7, "sentences": 2}]
    assert len(client.audio()) == len("Hello there.The second sentence is longer.") * 400


async def test_audio_goes_in_whole_samples_of_at_most_8_kib_per_frame():
    speaker, client = speaker_for(FakeEngine(bytes_per_char=2000))
    await speaker.finish(1, "A sentence long enough for several frames.")
    await client.until(lambda: "tts.end" in client.types())
    frames = [e[1] for e in client.log if e[0] == "bytes"]
    assert len(frames) > 2
    assert all(0 < len(f) <= MAX_BINARY_FRAME and len(f) % 2 == 0 for f in frames)


async def test_a_reply_known_only_at_the_end_is_spoken_whole():
    speaker, client = speaker_for(FakeEngine())
    await speaker.finish(3, "One. Two. Three.")
    await client.until(lambda: "tts.end" in client.types())
    assert [e["text"] for e in client.events("tts.audio")] == ["One.", "Two.", "Three."]


async def test_the_final_text_adds_what_the_deltas_missed():
    speaker, client = speaker_for(FakeEngine())
    await speaker.feed(3, "First part. Sec")
    await speaker.finish(3, "First part. Second part.")
    await client.until(lambda: "tts.end" in client.types())
    assert [e["text"] for e in client.events("tts.audio")] == ["First part.", "Second part."]


async def test_stop_cancels_synthesis_and_no_more_audio_follows():
    hold = asyncio.Event()
    engine = FakeEngine(hold=hold)
    speaker, client = speaker_for(engine)
    await speaker.feed(5, "First sentence here. Second sentence here. Third")
    await client.until(lambda: len(client.audio()) > 0)
    await speaker.stop("barge_in")
    assert client.log[-1] == ("event", "tts.stop", {"reason": "barge_in"})
    assert engine.cancelled == 1
    sent = len(client.log)

    hold.set()
    await speaker.feed(5, " sentence. Fourth one.")  # late deltas of the cut reply
    await speaker.finish(5)
    await asyncio.sleep(0.05)
    assert len(client.log) == sent
    assert not speaker.speaking

    await speaker.finish(6, "A new reply.")  # the next reply is spoken again
    await client.until(lambda: "tts.end" in client.types())
    assert client.events("tts.audio")[-1]["message_id"] == 6


async def test_a_failing_engine_falls_to_the_next_for_this_and_later_sentences():
    down, up = FakeEngine("down", fail=True), FakeEngine("up", sample_rate=22050)
    speaker, client = speaker_for(down, up)
    await speaker.finish(1, "One. Two.")
    await client.until(lambda: "tts.end" in client.types())
    assert [(e["engine"], e["sample_rate"]) for e in client.events("tts.audio")] == [("up", 22050)] * 2
    assert len(down.calls) == 1
    assert "tts.speak" not in client.types()


class BreaksMidSentence(FakeEngine):
    """Its first chunk goes out, then it fails."""

    async def synthesize(self, text, *, voice=""):
        self.calls.append((text, voice))
        yield b"\x01\x02" * 100
        raise TtsUnavailable(f"{self.name} dropped")


async def test_an_engine_failing_mid_sentence_is_not_repeated_by_the_next():
    """The heard part is not said again from the start by the next engine; later sentences are."""
    breaks, up = BreaksMidSentence("breaks"), FakeEngine("up", sample_rate=22050)
    speaker, client = speaker_for(breaks, up)
    await speaker.finish(1, "One two three. Four.")
    await client.until(lambda: "tts.end" in client.types())
    audio = client.events("tts.audio")
    assert [(e["sentence"], e["engine"]) for e in audio] == [(1, "breaks"), (2, "up")]
    assert up.calls == [("Four.", "")]


async def test_when_every_engine_fails_the_browser_speaks(caplog):
    speaker, client = speaker_for(FakeEngine("a", fail=True), FakeEngine("b", fail=True),
                                  browser_voice="Samantha")
    await speaker.finish(2, "Still heard.")
    await client.until(lambda: "tts.end" in client.types())
    assert client.events("tts.speak") == [
        {"message_id": 2, "sentence": 1, "text": "Still heard.", "voice": "Samantha"}
    ]
    assert client.audio() == b""
    assert "browser speaks instead" in caplog.text


async def test_browser_mode_sends_text_per_sentence():
    client = Client()
    speaker = ReplySpeaker(choice=tts_choice_for(mode="browser"), send_event=client.send_event,
                           send_bytes=client.send_bytes)
    await speaker.feed(4, "First. Sec")
    await client.until(lambda: len(client.events("tts.speak")) == 1)
    await speaker.finish(4, "First. Second.")
    await client.until(lambda: "tts.end" in client.types())
    assert [e["text"] for e in client.events("tts.speak")] == ["First.", "Second."]
    assert client.audio() == b""


async def test_off_mode_says_nothing():
    client = Client()
    speaker = ReplySpeaker(choice=tts_choice_for(mode="off"), send_event=client.send_event,
                           send_bytes=client.send_bytes)
    await speaker.feed(1, "Hello. ")
    await speaker.finish(1)
    await asyncio.sleep(0.01)
    assert client.log == [] and not speaker.speaking


async def test_speaking_lasts_until_the_client_has_played_the_reply():
    speaker, client = speaker_for(FakeEngine())
    assert not speaker.speaking
    await speaker.finish(9, "Just this.")
    assert speaker.speaking
    await client.until(lambda: "tts.end" in client.types())
    assert speaker.speaking  # the client is still playing
    speaker.acknowledge()
    assert not speaker.speaking


async def test_a_reply_with_nothing_to_say_ends_silently():
    speaker, client = speaker_for(FakeEngine())
    await speaker.finish(1, "```\ncode only\n```")
    await asyncio.sleep(0.01)
    assert client.log == [] and not speaker.speaking


async def test_sockets_of_one_room_share_one_synthesis_per_sentence():
    hold = asyncio.Event()
    engine = FakeEngine(hold=hold)
    cache = SynthesisCache()
    (one, client_one), (two, client_two) = speaker_for(engine, cache=cache), speaker_for(engine, cache=cache)
    await one.finish(1, "Shared sentence.")
    await two.finish(1, "Shared sentence.")
    await client_one.until(lambda: client_one.audio() != b"")
    await client_two.until(lambda: client_two.audio() != b"")
    hold.set()
    await client_one.until(lambda: "tts.end" in client_one.types())
    await client_two.until(lambda: "tts.end" in client_two.types())
    assert len(engine.calls) == 1
    assert client_one.audio() == client_two.audio() and len(client_one.audio()) == 16 * 400

    three, client_three = speaker_for(engine, cache=cache)  # later: from the cache
    await three.finish(2, "Shared sentence.")
    await client_three.until(lambda: "tts.end" in client_three.types())
    assert len(engine.calls) == 1 and client_three.audio() == client_one.audio()


async def test_one_socket_stopping_does_not_cut_another_sharing_the_sentence():
    hold = asyncio.Event()
    engine = FakeEngine(hold=hold)
    cache = SynthesisCache()
    (one, _client_one), (two, client_two) = speaker_for(engine, cache=cache), speaker_for(engine, cache=cache)
    await one.finish(1, "Shared sentence.")
    await two.finish(1, "Shared sentence.")
    await client_two.until(lambda: client_two.audio() != b"")
    await one.stop()
    hold.set()
    await client_two.until(lambda: "tts.end" in client_two.types())
    assert len(client_two.audio()) == 16 * 400 and engine.cancelled == 0


def test_the_cache_keeps_the_most_recent_sentences():
    cache = SynthesisCache(size=2)

    async def fill() -> None:
        engine = FakeEngine()
        for text in ("a.", "b.", "c."):
            [chunk async for chunk in cache.stream(engine, text, voice="", usage=None)]
        [chunk async for chunk in cache.stream(engine, "c.", voice="", usage=None)]
        assert [call[0] for call in engine.calls] == ["a.", "b.", "c."]

    asyncio.run(fill())
    assert len(cache._entries) == 2


async def test_a_real_offline_voice_speaks_the_reply():
    client = Client()
    speaker = ReplySpeaker(choice=tts_choice_for(mode="server"), send_event=client.send_event,
                           send_bytes=client.send_bytes, cache=SynthesisCache())
    await speaker.feed(1, "Welcome to the course. ")
    await client.until(lambda: client.audio() != b"", timeout=30)
    audio = client.events("tts.audio")[0]
    assert (audio["engine"], audio["sample_rate"], audio["text"]) == ("piper", 22050, "Welcome to the course.")
    await speaker.finish(1)
    await client.until(lambda: "tts.end" in client.types(), timeout=30)
    assert len(client.audio()) > 22050  # over half a second of speech


async def test_a_restarted_reply_drops_its_unfinished_sentence():
    speaker, client = speaker_for(FakeEngine())
    await speaker.feed(8, "Said already. Half a sent")
    await speaker.feed(8, "", restart=True)
    await speaker.feed(8, "A new start.")
    await speaker.finish(8)
    await client.until(lambda: "tts.end" in client.types())
    assert [e["text"] for e in client.events("tts.audio")] == ["Said already.", "A new start."]


async def test_a_long_first_sentence_is_spoken_from_its_first_clause():
    speaker, client = speaker_for(FakeEngine())
    await speaker.feed(4, "Recursion needs a base case, or the function never stops calling")
    await client.until(lambda: len(client.events("tts.audio")) == 1)  # before the full stop
    await speaker.feed(4, " itself. Later sentences, even long ones like this one, stay whole.")
    await speaker.finish(4)
    await client.until(lambda: "tts.end" in client.types())
    assert [e["text"] for e in client.events("tts.audio")] == [
        "Recursion needs a base case,",
        "or the function never stops calling itself.",
        "Later sentences, even long ones like this one, stay whole.",
    ]


async def test_an_interrupted_reply_is_silenced_and_never_spoken_from_its_final_text():
    hold = asyncio.Event()
    speaker, client = speaker_for(FakeEngine(hold=hold))
    await speaker.feed(5, "First sentence here. Second")
    await client.until(lambda: client.audio() != b"")
    await speaker.finish(5, "First sentence here. Second part cut", status="interrupted")
    assert client.log[-1] == ("event", "tts.stop", {"reason": "interrupted"})
    hold.set()

    await speaker.finish(6, "Never streamed, then stopped.", status="interrupted")
    await asyncio.sleep(0.05)
    assert [e["message_id"] for e in client.events("tts.audio")] == [5]
    assert not speaker.speaking


async def test_a_failed_reply_says_what_was_complete_and_ends():
    speaker, client = speaker_for(FakeEngine())
    await speaker.feed(2, "Complete sentence. Half")
    await speaker.finish(2, "Complete sentence. Half", status="failed")
    await client.until(lambda: "tts.end" in client.types())
    assert [e["text"] for e in client.events("tts.audio")] == ["Complete sentence."]


async def test_after_a_restart_stop_the_reply_is_spoken_again_from_its_new_text():
    hold = asyncio.Event()
    speaker, client = speaker_for(FakeEngine(hold=hold))
    await speaker.feed(3, "The first model said this. And")
    await client.until(lambda: client.audio() != b"")
    await speaker.stop("restart")
    hold.set()
    await speaker.feed(3, "The second model says this.")
    await speaker.finish(3, "The second model says this.")
    await client.until(lambda: "tts.end" in client.types())
    assert [e["text"] for e in client.events("tts.audio")] == ["The first model said this.", "The second model says this."]


# --- With the OpenAI voice (its local stand-in) -------------------------------------------------


@pytest.fixture
def openai_standin(settings):
    standin_module = pytest.importorskip("tests.support.openai_standin")
    pytest.importorskip("voice.providers.openai_audio")
    with standin_module.OpenAIStandin() as running:
        settings.OPENAI_API_KEY = "sk-test-key"
        settings.OPENAI_BASE_URL = running.base_url
        settings.OPENAI_AUDIO_TIMEOUT_SECONDS = 5.0
        yield running, standin_module


async def test_auto_speaks_with_the_openai_voice_of_the_persona(openai_standin):
    standin, module = openai_standin
    standin.script_speech(module.Speech(module.tone_pcm(300), chunks=3))

    class Persona:
        voice_openai, voice_piper, voice_browser = "nova", "joe", ""

    client = Client()
    speaker = ReplySpeaker(choice=tts_choice_for(persona=Persona(), mode="auto"), send_event=client.send_event,
                           send_bytes=client.send_bytes, cache=SynthesisCache())
    await speaker.finish(1, "Hello from the cloud.")
    await client.until(lambda: "tts.end" in client.types())
    audio = client.events("tts.audio")[0]
    assert (audio["engine"], audio["sample_rate"]) == ("openai", 24000)
    assert standin.speeches[-1]["voice"] == "nova" and standin.speeches[-1]["input"] == "Hello from the cloud."
    assert len(client.audio()) == 300 * 48  # 300 ms at 24 kHz, 2 bytes a sample


async def test_auto_falls_back_to_piper_when_openai_refuses(openai_standin):
    standin, module = openai_standin
    standin.script_speech(module.Status(500), module.Status(500))
    client = Client()
    speaker = ReplySpeaker(choice=tts_choice_for(mode="auto"), send_event=client.send_event,
                           send_bytes=client.send_bytes, cache=SynthesisCache())
    await speaker.finish(1, "The cloud is down. Piper speaks.")
    await client.until(lambda: "tts.end" in client.types(), timeout=30)
    assert [e["engine"] for e in client.events("tts.audio")] == ["piper", "piper"]
    assert len(standin.speeches) == 1  # not asked again for the next sentence


# --- Through the socket's VoiceConnection (tutor events as the consumer forwards them) -------------


async def test_a_failed_tutor_message_on_the_socket_speaks_what_was_complete_and_ends():
    from voice.live import VoiceConnection

    speaker, client = speaker_for(FakeEngine())
    connection = VoiceConnection(host=None)
    connection.speaker = speaker

    def envelope(**data) -> str:
        return json.dumps({"type": "x", "data": data})

    await connection.tutor_event("tutor.delta", envelope(message_id=2, text="Complete sentence. Half"))
    await connection.tutor_event(
        "tutor.message", envelope(message_id=2, text="Complete sentence. Half", status="failed")
    )
    await client.until(lambda: "tts.end" in client.types())
    assert [e["text"] for e in client.events("tts.audio")] == ["Complete sentence."]
    assert "tts.stop" not in client.types()  # not a `tts.stop` {reason: "failed"} (no such reason)
    assert speaker._replies.keys() <= {2}


async def test_a_reply_interrupted_before_any_sentence_leaves_nothing_behind():
    from voice.live import VoiceConnection

    speaker, client = speaker_for(FakeEngine())
    connection = VoiceConnection(host=None)
    connection.speaker = speaker
    for message_id in range(1, 4):
        data = {"message_id": message_id, "text": "Half a sente"}
        await connection.tutor_event("tutor.delta", json.dumps({"data": data}))
        await connection.tutor_event("tutor.message", json.dumps({"data": {**data, "status": "interrupted"}}))
    assert speaker._replies == {}
    assert client.log == []
