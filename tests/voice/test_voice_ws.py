"""Audio on the room and conversation sockets: checks, budget, who may speak, what a heard
utterance becomes (a persisted speech line the tutor answers), partials, engine switches, kept
audio and the browser's own transcripts. Recognition is scripted (tests/voice/live_support.py);
real speech end to end is test_voice_e2e.py."""

from __future__ import annotations

import asyncio
import wave
from io import BytesIO

import pytest
from channels.db import database_sync_to_async

from sessions.models import LiveSession, Message, TranscriptSegment
from tests import factories
from tests.sessions.conftest import open_socket
from tests.support.openai_standin import openai_standin  # noqa: F401  (a fixture)
from tests.voice.live_support import ScriptedEngine, pcm, say, use_fake_voice

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_passwords")]


@pytest.fixture(autouse=True)
def _quick(settings, tmp_path):
    settings.ROOM_TUTOR_DEBOUNCE_MS = 0
    settings.MEDIA_ROOT = str(tmp_path / "media")


@pytest.fixture
def offline_tutor(db):
    return factories.LLMModelFactory(
        tenant=None, position=9, provider="offline", model_name="offline-socratic",
        base_url_setting="", api_key_setting="",
    )


async def until(socket, event_type: str, timeout: float = 5, where=None) -> dict:
    return (await socket.until(event_type, timeout, where))[0]


async def room_socket(room, user):
    socket = await open_socket(f"/ws/rooms/{room.pk}/", user=user)
    assert (await socket.receive())["type"] == "room.status"
    return socket


async def monitor_socket(session, professor):
    socket = await open_socket(f"/ws/sessions/{session.pk}/monitor/", user=professor.user)
    assert (await socket.receive())["type"] == "session.status"
    return socket


def _ready(room):
    room.tutor_status = "ready"
    room.save(update_fields=["tutor_status"])
    course = room.session.course
    course.scope_terms = ["python", "loop", "range"]
    course.save(update_fields=["scope_terms"])


async def test_malformed_frames_get_an_error_and_the_socket_stays_usable(room, assigned_student, monkeypatch):
    use_fake_voice(monkeypatch, [ScriptedEngine("pocketsphinx", ["what is a loop"])])
    socket = await room_socket(room, assigned_student.user)
    await socket.comm.send_to(bytes_data=b"\x01\x02\x03")  # odd length: not PCM16
    error = await until(socket, "error")
    assert error["data"]["code"] == "audio_malformed" and error["seq"] is None
    await socket.send({"type": "audio.end", "data": "nonsense"})  # nothing heard yet: no crash
    await socket.send({"type": "ping", "data": {"n": 1}})
    assert (await until(socket, "pong"))["data"] == {"n": 1}
    await socket.close()


async def test_audio_over_the_budget_is_refused_and_repeats_close_4429(settings, room, assigned_student, monkeypatch):
    settings.WS_MAX_AUDIO_SECONDS_PER_MINUTE = 1
    use_fake_voice(monkeypatch, [ScriptedEngine("pocketsphinx")])
    socket = await room_socket(room, assigned_student.user)
    for _ in range(4):  # 4 x 250 ms: exactly the budget
        await socket.comm.send_to(bytes_data=pcm(250))
    assert await socket.nothing(0.3)
    await socket.comm.send_to(bytes_data=pcm(250))
    error = await until(socket, "error")
    assert error["data"]["code"] == "audio_rate_limited"
    for _ in range(settings.WS_VIOLATIONS_BEFORE_CLOSE):
        await socket.comm.send_to(bytes_data=pcm(250))
    await socket.expect_close(4429)


async def test_the_professor_cannot_speak_on_a_room_socket(room, professor, monkeypatch):
    use_fake_voice(monkeypatch, [ScriptedEngine("pocketsphinx", ["hello"])])
    socket = await room_socket(room, professor.user)
    await socket.comm.send_to(bytes_data=pcm(40))
    error = await until(socket, "error")
    assert error["data"]["code"] == "forbidden"
    for _ in range(10):  # told again at most once a second: no error per frame
        await socket.comm.send_to(bytes_data=pcm(40))
    await socket.send({"type": "ping", "data": {}})
    errors = 0
    while (message := await socket.receive())["type"] != "pong":
        errors += message["type"] == "error"
    assert errors <= 2
    count = await database_sync_to_async(TranscriptSegment.objects.count)()
    assert count == 0
    await socket.close()


async def test_speech_becomes_a_persisted_speech_line_and_the_tutor_answers(
    room, assigned_student, professor, offline_tutor, monkeypatch
):
    await database_sync_to_async(_ready)(room)
    use_fake_voice(monkeypatch, [ScriptedEngine("pocketsphinx", ["how does a for loop over range work"], partials=True)])
    monitor = await monitor_socket(room.session, professor)
    socket = await room_socket(room, assigned_student.user)
    await say(socket, ms=800)

    partial = await until(monitor, "transcript.partial")
    assert partial["seq"] is None and partial["data"]["segment_id"] is None
    assert partial["data"]["text"] == "how" and partial["data"]["source"] == "speech"
    assert partial["data"]["room_id"] == room.pk and partial["data"]["speaker"]["kind"] == "student"
    final = await until(socket, "transcript.final")
    assert final["seq"] == 1
    assert final["data"]["text"] == "how does a for loop over range work"
    assert (final["data"]["source"], final["data"]["provider"]) == ("speech", "pocketsphinx")
    assert final["data"]["end_ms"] >= final["data"]["start_ms"]
    assert (await until(monitor, "transcript.final"))["seq"] == 1
    reply = await until(socket, "tutor.message")
    assert reply["data"]["text"] and reply["data"]["speaker"]["kind"] == "tutor"

    segment = await database_sync_to_async(TranscriptSegment.objects.get)(seq=1)
    assert (segment.source, segment.provider, bool(segment.audio)) == ("speech", "pocketsphinx", False)
    assert socket.comm  # the socket stays open
    for s in (socket, monitor):
        await s.close()


async def test_keep_audio_stores_the_utterance_as_a_wav_on_the_segment(room, assigned_student, tenant, monkeypatch):
    tenant.keep_audio = True
    await database_sync_to_async(tenant.save)()
    use_fake_voice(monkeypatch, [ScriptedEngine("pocketsphinx", ["a list holds items"])])
    socket = await room_socket(room, assigned_student.user)
    await say(socket, ms=400)
    await until(socket, "transcript.final")

    segment = await database_sync_to_async(TranscriptSegment.objects.get)(seq=1)
    assert segment.audio.name.endswith(".wav")
    data = await database_sync_to_async(lambda: segment.audio.open("rb").read())()
    with wave.open(BytesIO(data)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        assert w.getnframes() == 16 * 400
    await socket.close()


async def test_an_engine_switch_is_recorded_and_reaches_the_monitor(room, assigned_student, professor, monkeypatch):
    from analytics.models import UsageEvent

    use_fake_voice(
        monkeypatch, [ScriptedEngine("deepgram", fail=True), ScriptedEngine("pocketsphinx", ["a loop repeats"])]
    )
    monitor = await monitor_socket(room.session, professor)
    socket = await room_socket(room, assigned_student.user)
    await say(socket, ms=200)

    engine = await until(monitor, "voice.engine")
    assert engine["data"] == {
        "room_id": room.pk, "from": "deepgram", "to": "pocketsphinx", "reason": "deepgram refused the connection",
    }
    final = await until(socket, "transcript.final")
    assert final["data"]["provider"] == "pocketsphinx"

    def recorded():
        event = UsageEvent.objects.get(kind="stt")
        return event.provider, event.outcome, event.session_id, LiveSession.objects.get(pk=room.session_id).degraded["stt"]

    provider, outcome, session_id, degraded = await database_sync_to_async(recorded)()
    assert (provider, outcome, session_id) == ("deepgram", "error", room.session_id)
    assert (degraded["from"], degraded["to"]) == ("deepgram", "pocketsphinx") and degraded["at"]
    for s in (socket, monitor):
        await s.close()


async def test_no_engine_left_tells_the_speaker_to_use_the_browser(room, assigned_student, professor, monkeypatch):
    use_fake_voice(monkeypatch, [ScriptedEngine("pocketsphinx", fail=True)])
    monitor = await monitor_socket(room.session, professor)
    socket = await room_socket(room, assigned_student.user)
    await say(socket, ms=200)
    error = await until(socket, "error")
    assert error["data"]["code"] == "stt_unavailable"
    engine = await until(monitor, "voice.engine")
    assert (engine["data"]["from"], engine["data"]["to"]) == ("pocketsphinx", None)
    for s in (socket, monitor):
        await s.close()


async def test_browser_transcripts_are_checked_then_heard_like_speech(room, assigned_student, monkeypatch):
    use_fake_voice(monkeypatch, [ScriptedEngine("pocketsphinx")])
    socket = await room_socket(room, assigned_student.user)
    await socket.send({"type": "transcript.client", "data": {"text": 42, "is_final": True}})
    assert (await until(socket, "error"))["data"]["code"] == "invalid"
    await socket.send({"type": "transcript.client", "data": {"text": "x" * 2001, "is_final": True}})
    assert (await until(socket, "error"))["data"]["code"] == "message_too_long"
    await socket.send({"type": "transcript.client", "data": {"text": "what does range return", "is_final": True}})
    final = await until(socket, "transcript.final")
    assert (final["data"]["text"], final["data"]["source"], final["data"]["provider"]) == (
        "what does range return", "speech", "browser",
    )
    await socket.close()


async def test_voice_config_is_validated(room, assigned_student):
    socket = await room_socket(room, assigned_student.user)
    await socket.send({"type": "voice.config", "data": {"tts": "loud"}})
    assert (await until(socket, "error"))["data"]["code"] == "invalid"
    await socket.send({"type": "voice.config", "data": {"tts": "off"}})
    assert (await until(socket, "voice.config"))["data"] == {"tts": "off"}
    await socket.close()


async def test_speech_in_a_practice_conversation_is_the_next_question(
    student, course, offline_tutor, monkeypatch, client, api_headers
):
    conversation = await database_sync_to_async(factories.ConversationFactory)(
        course=course, student=student, mode="socratic", persona=None
    )
    use_fake_voice(monkeypatch, [ScriptedEngine("pocketsphinx", ["what is a for loop"], partials=True)])
    socket = await open_socket(f"/ws/conversations/{conversation.pk}/", user=student.user)
    assert (await socket.receive())["type"] == "conversation.status"
    await say(socket, ms=400)
    partial = await until(socket, "transcript.partial")
    assert partial["data"]["conversation_id"] == conversation.pk and partial["seq"] is None
    question = await until(socket, "transcript.final")
    assert question["data"]["text"] == "what is a for loop"
    assert (question["data"]["source"], question["data"]["provider"]) == ("speech", "pocketsphinx")
    reply = await until(socket, "tutor.message")
    assert reply["data"]["text"]
    await socket.close()

    message = await database_sync_to_async(Message.objects.get)(conversation=conversation, role="student")
    assert (message.source, message.provider, bool(message.audio)) == ("speech", "pocketsphinx", False)
    listed = await database_sync_to_async(
        lambda: client.get(f"/api/v1/conversations/{conversation.pk}/messages/", **api_headers(student.user)).json()
    )()
    assert [(m["role"], m["source"], m["provider"]) for m in listed["results"]] == [
        ("student", "speech", "pocketsphinx"), ("tutor", "text", ""),
    ]
    # A reconnecting client replays the same event from the database.
    socket = await open_socket(f"/ws/conversations/{conversation.pk}/?after_seq=0", user=student.user)
    replayed = await until(socket, "transcript.final")
    assert (replayed["data"]["source"], replayed["data"]["provider"]) == ("speech", "pocketsphinx")
    await socket.close()


async def test_keep_audio_stores_a_spoken_question_as_a_wav_on_the_message(
    student, course, tenant, offline_tutor, monkeypatch
):
    tenant.keep_audio = True
    await database_sync_to_async(tenant.save)()
    conversation = await database_sync_to_async(factories.ConversationFactory)(
        course=course, student=student, mode="socratic", persona=None
    )
    use_fake_voice(monkeypatch, [ScriptedEngine("pocketsphinx", ["what is a for loop"])])
    socket = await open_socket(f"/ws/conversations/{conversation.pk}/", user=student.user)
    assert (await socket.receive())["type"] == "conversation.status"
    await say(socket, ms=400)
    await until(socket, "tutor.message")
    await socket.close()

    message = await database_sync_to_async(Message.objects.get)(conversation=conversation, role="student")
    assert message.source == "speech" and message.audio.name.endswith(".wav")
    data = await database_sync_to_async(lambda: message.audio.open("rb").read())()
    with wave.open(BytesIO(data)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        assert w.getnframes() == 16 * 400


async def read_frames(socket, until_type: str, timeout: float = 20) -> list:
    """Text events (dicts) and binary frames (bytes) until an event of `until_type`."""
    import json

    out: list = []
    async with asyncio.timeout(timeout):
        while True:
            output = await socket.comm.receive_output(timeout)
            if output.get("bytes") is not None:
                out.append(output["bytes"])
                continue
            message = json.loads(output["text"])
            out.append(message)
            if message["type"] == until_type:
                return out


async def test_a_socket_that_asks_for_server_speech_hears_the_tutors_reply(room, assigned_student, offline_tutor):
    await database_sync_to_async(_ready)(room)
    socket = await room_socket(room, assigned_student.user)
    listener = await room_socket(room, assigned_student.user)  # a text-only tab: no audio
    await socket.send({"type": "voice.config", "data": {"tts": "server"}})
    assert (await until(socket, "voice.config"))["data"] == {"tts": "server"}
    await socket.send({"type": "chat.message", "data": {"text": "How does a for loop over range(3) work?"}})

    frames = await read_frames(socket, "tts.end")
    events = [f for f in frames if isinstance(f, dict)]
    audio = [f for f in frames if isinstance(f, bytes)]
    assert "tutor.message" in [e["type"] for e in events]
    first = next(e for e in events if e["type"] == "tts.audio")
    assert first["data"]["format"] == "pcm16" and first["data"]["engine"] in ("piper", "espeak")
    assert audio and all(len(chunk) % 2 == 0 for chunk in audio)
    await socket.send({"type": "tts.done", "data": {}})

    text_only = await read_frames(listener, "tutor.message")
    assert not [f for f in text_only if isinstance(f, bytes) or f["type"].startswith("tts.")]
    for s in (socket, listener):
        await s.close()


async def test_browser_speech_gets_the_reply_as_text_to_speak(room, assigned_student, offline_tutor):
    await database_sync_to_async(_ready)(room)
    socket = await room_socket(room, assigned_student.user)
    await socket.send({"type": "voice.config", "data": {"tts": "browser"}})
    await until(socket, "voice.config")
    await socket.send({"type": "chat.message", "data": {"text": "How does a for loop over range(3) work?"}})
    speak = await until(socket, "tts.speak", timeout=10)
    assert speak["data"]["text"]
    await socket.close()


async def test_partials_are_throttled_per_speaker_and_finals_always_go_out(settings):
    from tests.voice.live_support import FakeUtterance
    from voice.live import VoiceConnection
    from voice.providers.base import Transcript

    settings.VOICE_PARTIALS_PER_SECOND = 5

    class Host:
        def __init__(self):
            self.partials, self.finals = [], []

        def tutor_speaking(self):
            return False

        async def voice_partial(self, transcript, *, offset_ms):
            self.partials.append(transcript.text)

        async def voice_final(self, utterance, *, offset_ms, answer):
            self.finals.append((utterance.text, answer))

    host = Host()
    voice = VoiceConnection(host)
    for n in range(10):  # ten partials at once: one goes out, the final carries the rest
        await voice.on_partial(Transcript(text=f"word {n}", is_final=False, provider="pocketsphinx"))
    await voice.on_final(FakeUtterance(text="word 9 done", provider="pocketsphinx"))
    await voice.on_final(FakeUtterance(text="mhm", provider="pocketsphinx"))
    assert host.partials == ["word 0"]
    assert host.finals == [("word 9 done", True), ("mhm", True)]  # the tutor is silent: "mhm" is an answer


async def test_speaking_over_the_tutor_in_a_practice_conversation_stops_it(
    settings, student, course, monkeypatch, openai_standin  # noqa: F811  (the fixture imported above)
):
    from tests.sessions.tutor_fixtures import online_model
    from tests.support.openai_standin import Reply

    settings.VOICE_BARGE_IN_MS = 300
    await database_sync_to_async(online_model)(settings, openai_standin)
    course.guardrail_enabled = False
    await database_sync_to_async(course.save)()
    conversation = await database_sync_to_async(factories.ConversationFactory)(
        course=course, student=student, mode="socratic", persona=None
    )
    openai_standin.script(Reply(" ".join(["A loop repeats."] * 50), chunk_delay=0.05), Reply("Second answer."))
    use_fake_voice(monkeypatch, [ScriptedEngine("pocketsphinx", ["wait what is a function"])])
    socket = await open_socket(f"/ws/conversations/{conversation.pk}/", user=student.user)
    assert (await socket.receive())["type"] == "conversation.status"
    await socket.send({"type": "chat.message", "data": {"text": "What is a loop?"}})
    await until(socket, "tutor.delta")
    await say(socket, ms=600)
    assert (await until(socket, "tts.stop"))["data"] == {"reason": "barge_in"}
    stopped = await until(socket, "tutor.message")
    assert stopped["data"]["status"] == "interrupted"
    question = await until(socket, "transcript.final")
    assert question["data"]["text"] == "wait what is a function"
    answer = await until(socket, "tutor.message", timeout=10)
    assert answer["data"]["text"] == "Second answer.", answer
    await socket.close()


async def test_speech_after_a_muted_minute_is_a_minute_later_on_the_session_clock(room, assigned_student, monkeypatch):
    """Offsets count audio heard; the microphone is off between utterances: the session's clock
    must not stop with it (typed lines, exports and captions place lines by start_ms)."""
    from datetime import timedelta

    from django.utils import timezone

    from voice import live as voice_live

    def start_ten_minutes_ago():
        LiveSession.objects.filter(pk=room.session_id).update(started_at=timezone.now() - timedelta(minutes=10))

    await database_sync_to_async(start_ten_minutes_ago)()
    use_fake_voice(monkeypatch, [ScriptedEngine("pocketsphinx", ["first question here", "second question here"])])
    shift = {"s": 0.0}
    real_monotonic = voice_live.time.monotonic

    class Clock:
        @staticmethod
        def monotonic():
            return real_monotonic() + shift["s"]

    monkeypatch.setattr(voice_live, "time", Clock)
    socket = await room_socket(room, assigned_student.user)
    await say(socket, ms=800)
    first = (await until(socket, "transcript.final"))["data"]
    assert 600_000 - 1000 <= first["start_ms"] <= 600_000 + 5000
    shift["s"] = 60.0  # the microphone was muted for a minute
    await say(socket, ms=800)
    second = (await until(socket, "transcript.final"))["data"]
    assert second["start_ms"] >= first["end_ms"] + 59_000
    assert second["end_ms"] - second["start_ms"] == 800
    await socket.close()


async def test_speech_begun_before_the_session_clock_ran_lands_on_it(room, assigned_student, monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    def start_ten_minutes_ago():
        LiveSession.objects.filter(pk=room.session_id).update(started_at=timezone.now() - timedelta(minutes=10))

    use_fake_voice(monkeypatch, [ScriptedEngine("pocketsphinx", ["a question before the start"])])
    socket = await room_socket(room, assigned_student.user)
    await socket.comm.send_to(bytes_data=pcm(40))  # the scope is read now: no clock yet
    await socket.send({"type": "ping", "data": {}})
    await until(socket, "pong")
    await database_sync_to_async(start_ten_minutes_ago)()
    await say(socket, ms=800)
    final = (await until(socket, "transcript.final"))["data"]
    assert 600_000 - 1000 <= final["start_ms"] <= 600_000 + 5000
    await socket.close()


async def test_the_utterance_before_a_quick_close_is_still_kept(room, assigned_student, monkeypatch):
    """The page's stop (or the lecture mic's) sends `audio.end` and closes the socket at once: the
    last utterance, still being transcribed, becomes the room's line all the same."""
    from tests.voice.audio_support import frames, silence, speak
    from voice import live as voice_live
    from voice.providers.base import SttChain

    class SlowEngine:
        name = provider = "openai"

        async def open(self, options, *, on_partial=None):
            return self

        async def feed(self, pcm):
            return None

        async def finish(self):
            from voice.providers.base import Transcript

            await asyncio.sleep(0.3)
            return Transcript(text="my last question", is_final=True, provider=self.provider)

        async def aclose(self):
            return None

    monkeypatch.setattr(voice_live, "stt_chain_factory", lambda: SttChain([SlowEngine()]))
    socket = await room_socket(room, assigned_student.user)
    for frame in frames(silence(300) + speak("what is a loop")):
        await socket.comm.send_to(bytes_data=frame)
    await socket.send({"type": "audio.end", "data": {}})
    await socket.comm.disconnect(timeout=5)
    segment = await database_sync_to_async(TranscriptSegment.objects.get)(room=room)
    assert (segment.text, segment.source, segment.provider) == ("my last question", "speech", "openai")


async def test_a_failure_behind_an_audio_frame_is_an_error_not_a_dead_socket(room, assigned_student, monkeypatch):
    """Text commands that fail unexpectedly answer `internal_error`; audio frames the same (a VAD
    model that cannot load, the database gone for the speaker's scope), never a 1011 close."""
    from voice import live as voice_live

    class BrokenInput:
        async def feed(self, pcm):
            raise RuntimeError("the VAD model could not be loaded")

        async def aclose(self):
            return None

    use_fake_voice(monkeypatch, [ScriptedEngine("pocketsphinx")])
    monkeypatch.setattr(voice_live, "voice_input_factory", lambda **kwargs: BrokenInput())
    socket = await room_socket(room, assigned_student.user)
    await socket.comm.send_to(bytes_data=pcm(40))
    assert (await until(socket, "error"))["data"]["code"] == "internal_error"
    await socket.send({"type": "ping", "data": {"n": 2}})
    assert (await until(socket, "pong"))["data"] == {"n": 2}
    await socket.close()
