"""Barge-in: a student who talks over the tutor (voiced >= VOICE_BARGE_IN_MS, then words that are
not a backchannel) stops its reply and its speech, and is answered; "mhm" does neither."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async

from sessions.models import TranscriptSegment
from tests.sessions.conftest import open_socket
from tests.sessions.tutor_fixtures import online_model
from tests.support.openai_standin import Reply, openai_standin  # noqa: F401  (a fixture)
from tests.voice.live_support import ScriptedEngine, say, use_fake_voice

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_passwords")]

SLOW = " ".join(["A loop repeats."] * 50)


@pytest.fixture(autouse=True)
def _quick(settings):
    settings.ROOM_TUTOR_DEBOUNCE_MS = 0
    settings.VOICE_BARGE_IN_MS = 300


@pytest.fixture
def slow_tutor(settings, openai_standin, room, course):  # noqa: F811
    """The room's tutor ready, streaming a long first reply slowly, then a short one."""
    online_model(settings, openai_standin)
    course.scope_terms = ["loop", "range", "python"]
    course.guardrail_enabled = False
    course.save()
    room.tutor_status = "ready"
    room.save(update_fields=["tutor_status"])
    openai_standin.script(Reply(SLOW, chunk_delay=0.05), Reply("Second answer."))
    return openai_standin


async def read_until(socket, predicate, timeout: float = 8) -> list[dict]:
    """Messages read until one satisfies `predicate` (included)."""
    seen = []
    async with asyncio.timeout(timeout):
        while True:
            message = await socket.receive(timeout)
            seen.append(message)
            if predicate(message):
                return seen


def is_type(event_type: str, **data):
    return lambda m: m["type"] == event_type and all(m["data"].get(k) == v for k, v in data.items())


async def _tutor_streaming(room, student):
    socket = await open_socket(f"/ws/rooms/{room.pk}/", user=student.user)
    assert (await socket.receive())["type"] == "room.status"
    await socket.send({"type": "chat.message", "data": {"text": "How does a for loop over range work?"}})
    await read_until(socket, is_type("tutor.delta"))
    return socket


async def test_talking_over_the_tutor_stops_it_and_gets_answered(room, assigned_student, slow_tutor, monkeypatch):
    use_fake_voice(monkeypatch, [ScriptedEngine("pocketsphinx", ["wait what does range three give"])])
    socket = await _tutor_streaming(room, assigned_student)
    other = await open_socket(f"/ws/rooms/{room.pk}/", user=assigned_student.user)  # a second tab
    assert (await other.receive())["type"] == "room.status"

    await say(socket, ms=600)
    events = await read_until(socket, is_type("tutor.message", text="Second answer."))
    types = [m["type"] for m in events]
    assert "tts.stop" in types
    assert next(m for m in events if m["type"] == "tts.stop")["data"] == {"reason": "barge_in"}
    replies = [m["data"] for m in events if m["type"] == "tutor.message"]
    assert [r["status"] for r in replies] == ["interrupted", "complete"]
    assert len(replies[0]["text"]) < len(SLOW)
    heard = next(m for m in events if m["type"] == "transcript.final")
    assert (heard["data"]["text"], heard["data"]["source"]) == ("wait what does range three give", "speech")
    assert types.index("tts.stop") < types.index("transcript.final")  # stopped first, then heard
    assert any(m["type"] == "tts.stop" for m in await read_until(other, is_type("tts.stop")))
    for s in (socket, other):
        await s.close()


async def test_a_backchannel_neither_interrupts_nor_starts_a_turn(room, assigned_student, slow_tutor, monkeypatch):
    use_fake_voice(monkeypatch, [ScriptedEngine("pocketsphinx", ["mhm okay"])])
    socket = await _tutor_streaming(room, assigned_student)

    await say(socket, ms=600)
    events = await read_until(socket, is_type("tutor.message"), timeout=15)
    assert "tts.stop" not in [m["type"] for m in events]
    assert events[-1]["data"]["status"] == "complete" and events[-1]["data"]["text"] == SLOW
    heard = [m["data"]["text"] for m in events if m["type"] == "transcript.final"]
    assert heard == ["mhm okay"]  # kept in the transcript
    assert await socket.nothing(0.5)  # and no new turn for it
    spoken = await database_sync_to_async(
        lambda: list(TranscriptSegment.objects.filter(source="speech").values_list("text", flat=True))
    )()
    assert spoken == ["mhm okay"]
    assert len(slow_tutor.requests) == 1
    await socket.close()


async def test_a_backchannel_to_a_silent_tutor_is_an_answer(room, assigned_student, slow_tutor, monkeypatch):
    """"yes" after the tutor finished (say, to "Shall I show an example?") starts a turn."""
    with slow_tutor._lock:
        slow_tutor._queue.clear()  # short replies this time: the tutor is silent when "yes" comes
    slow_tutor.script(Reply("Shall I show an example?"), Reply("Here is one."))
    use_fake_voice(monkeypatch, [ScriptedEngine("pocketsphinx", ["yes"])])
    socket = await open_socket(f"/ws/rooms/{room.pk}/", user=assigned_student.user)
    assert (await socket.receive())["type"] == "room.status"
    await socket.send({"type": "chat.message", "data": {"text": "How does a for loop over range work?"}})
    await read_until(socket, is_type("tutor.message", text="Shall I show an example?"))
    await say(socket, ms=600)
    events = await read_until(socket, is_type("tutor.message", text="Here is one."), timeout=15)
    assert next(m["data"]["text"] for m in events if m["type"] == "transcript.final") == "yes"
    assert len(slow_tutor.requests) == 2
    await socket.close()


async def test_browser_recognised_words_over_the_tutor_are_a_barge_in(room, assigned_student, slow_tutor):
    """With the browser's own recognition no audio reaches the server's VAD: its words count."""
    socket = await _tutor_streaming(room, assigned_student)
    await socket.send({"type": "transcript.client", "data": {"text": "wait what about while loops", "is_final": True}})
    events = await read_until(socket, is_type("tutor.message", text="Second answer."), timeout=15)
    assert next(m for m in events if m["type"] == "tts.stop")["data"] == {"reason": "barge_in"}
    replies = [m["data"] for m in events if m["type"] == "tutor.message"]
    assert [r["status"] for r in replies] == ["interrupted", "complete"]
    await socket.close()


async def test_a_browser_backchannel_over_the_tutor_is_not_a_barge_in(room, assigned_student, slow_tutor):
    socket = await _tutor_streaming(room, assigned_student)
    await socket.send({"type": "transcript.client", "data": {"text": "mhm", "is_final": True}})
    events = await read_until(socket, is_type("tutor.message"), timeout=15)
    assert "tts.stop" not in [m["type"] for m in events]
    assert events[-1]["data"]["status"] == "complete"
    assert await socket.nothing(0.5)
    assert len(slow_tutor.requests) == 1
    await socket.close()


async def test_a_short_noise_over_the_tutor_is_not_a_barge_in(settings, room, assigned_student, slow_tutor, monkeypatch):
    settings.VOICE_BARGE_IN_MS = 2000  # less voiced audio than this: not a barge-in candidate
    use_fake_voice(monkeypatch, [ScriptedEngine("pocketsphinx", ["what about while loops"])])
    socket = await _tutor_streaming(room, assigned_student)
    await say(socket, ms=400)
    events = await read_until(socket, is_type("tutor.message"), timeout=15)
    assert "tts.stop" not in [m["type"] for m in events]
    assert events[-1]["data"]["status"] == "complete"
    # The line waited its turn: answered after the first reply.
    answer = await read_until(socket, is_type("tutor.message"))
    assert answer[-1]["data"]["text"] == "Second answer."
    await socket.close()


async def test_barge_in_stops_the_speakers_audio_with_one_tts_stop(room, assigned_student, slow_tutor, monkeypatch):
    use_fake_voice(monkeypatch, [ScriptedEngine("pocketsphinx", ["hold on what about range three"])])
    socket = await open_socket(f"/ws/rooms/{room.pk}/", user=assigned_student.user)
    assert (await socket.receive())["type"] == "room.status"
    await socket.send({"type": "voice.config", "data": {"tts": "server"}})
    await socket.send({"type": "chat.message", "data": {"text": "How does a for loop over range work?"}})
    frames = await read_frames(socket, lambda m: m["type"] == "tts.audio")
    assert frames[-1]["data"]["message_id"]

    await say(socket, ms=600)
    frames = await read_frames(socket, lambda m: m["type"] == "tutor.message" and m["data"]["text"] == "Second answer.")
    stops = [f for f in frames if isinstance(f, dict) and f["type"] == "tts.stop"]
    assert [s["data"] for s in stops] == [{"reason": "barge_in"}]
    await socket.close()


async def read_frames(socket, predicate, timeout: float = 15) -> list:
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
            if predicate(message):
                return out
