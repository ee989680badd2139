"""Real speech end to end, offline: espeak-ng says a sentence, the test streams it as 20 ms PCM
frames into a room socket, VAD cuts the utterance, pocketsphinx (the course's scope terms as
keywords) hears it, the line is persisted and broadcast, and the room tutor answers."""

from __future__ import annotations

import shutil

import pytest
from channels.db import database_sync_to_async

from sessions.models import TranscriptSegment
from tests import factories
from tests.sessions.conftest import open_socket
from tests.voice.audio_support import frames, silence, speak
from voice import live as voice_live
from voice.providers.base import SttChain, SttUnavailable

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fast_passwords"),
    pytest.mark.skipif(not shutil.which("espeak-ng"), reason="espeak-ng is missing"),
]

SENTENCE = "what is a for loop"


@pytest.fixture(autouse=True)
def _offline(settings):
    settings.ROOM_TUTOR_DEBOUNCE_MS = 0
    settings.DEEPGRAM_API_KEY = ""
    settings.OPENAI_API_KEY = ""


def _ready(room) -> None:
    factories.LLMModelFactory(
        tenant=None, position=9, provider="offline", model_name="offline-socratic",
        base_url_setting="", api_key_setting="",
    )
    course = room.session.course
    course.scope_terms = ["python", "loop", "range", "what", "is", "a", "recursion"]
    course.save(update_fields=["scope_terms"])
    room.tutor_status = "ready"
    room.save(update_fields=["tutor_status"])


async def until(socket, event_type: str, timeout: float = 20) -> tuple[dict, list[dict]]:
    return await socket.until(event_type, timeout)


async def stream_speech(socket, text: str) -> None:
    for frame in frames(silence(300) + speak(text) + silence(1000), ms=20):
        await socket.comm.send_to(bytes_data=frame)


async def test_spoken_question_is_transcribed_persisted_broadcast_and_answered(room, assigned_student, professor):
    await database_sync_to_async(_ready)(room)
    monitor = await open_socket(f"/ws/sessions/{room.session_id}/monitor/", user=professor.user)
    assert (await monitor.receive())["type"] == "session.status"
    socket = await open_socket(f"/ws/rooms/{room.pk}/", user=assigned_student.user)
    assert (await socket.receive())["type"] == "room.status"

    await stream_speech(socket, SENTENCE)
    final, before = await until(socket, "transcript.final")
    assert final["data"]["text"] == SENTENCE
    assert (final["data"]["source"], final["data"]["provider"]) == ("speech", "pocketsphinx")
    assert final["data"]["speaker"]["id"] == assigned_student.user_id and final["seq"] == 1
    assert 0 <= final["data"]["start_ms"] < final["data"]["end_ms"]
    partials = [m for m in before if m["type"] == "transcript.partial"]
    assert all(p["seq"] is None and p["data"]["source"] == "speech" for p in partials)

    on_monitor, _ = await until(monitor, "transcript.final")
    assert on_monitor["data"]["segment_id"] == final["data"]["segment_id"]
    reply, _ = await until(socket, "tutor.message")
    assert reply["data"]["text"] and reply["data"]["speaker"]["kind"] == "tutor"
    segment = await database_sync_to_async(TranscriptSegment.objects.get)(seq=1)
    assert (segment.text, segment.source) == (SENTENCE, "speech")
    for s in (socket, monitor):
        await s.close()


class DownEngine:
    name = "deepgram"

    async def open(self, options, *, on_partial=None):
        raise SttUnavailable("deepgram: 503 Service Unavailable")


async def test_a_failing_engine_first_falls_back_to_pocketsphinx_and_the_monitor_hears_of_it(
    room, assigned_student, professor, monkeypatch
):
    from voice.providers.pocketsphinx import PocketsphinxEngine

    await database_sync_to_async(_ready)(room)
    monkeypatch.setattr(voice_live, "stt_chain_factory", lambda: SttChain([DownEngine(), PocketsphinxEngine()]))
    monitor = await open_socket(f"/ws/sessions/{room.session_id}/monitor/", user=professor.user)
    assert (await monitor.receive())["type"] == "session.status"
    socket = await open_socket(f"/ws/rooms/{room.pk}/", user=assigned_student.user)
    assert (await socket.receive())["type"] == "room.status"

    await stream_speech(socket, SENTENCE)
    engine, _ = await until(monitor, "voice.engine")
    assert engine["data"] == {
        "room_id": room.pk, "from": "deepgram", "to": "pocketsphinx", "reason": "deepgram: 503 Service Unavailable",
    }
    final, _ = await until(socket, "transcript.final")
    assert (final["data"]["text"], final["data"]["provider"]) == (SENTENCE, "pocketsphinx")
    for s in (socket, monitor):
        await s.close()
