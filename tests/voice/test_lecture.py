"""The lecture socket: only the session's professor speaks the lecture; what they say becomes
main-room lines on the monitor, which every room tutor reads into its prompt."""

from __future__ import annotations

import re

import pytest
from channels.db import database_sync_to_async
from django.urls import reverse
from django.utils import timezone

from sessions.models import Message, TranscriptSegment
from sessions.tickets import ticket_verify
from sessions.tutor import room_tutor
from tests import factories
from tests.sessions.conftest import open_socket, refusal
from tests.voice.live_support import ScriptedEngine, say, use_fake_voice

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_passwords")]

LECTURE = "a for loop over range five runs five times"


async def until(socket, event_type: str, timeout: float = 5) -> dict:
    return (await socket.until(event_type, timeout))[0]


def lecture_path(session_id: int) -> str:
    return f"/ws/sessions/{session_id}/lecture/"


async def test_the_lecture_socket_refuses_students_other_tenants_and_unknown_sessions(
    live_session, assigned_student, outsider
):
    assert await refusal(lecture_path(live_session.pk), user=assigned_student.user) == ("close", 4403)
    assert await refusal(lecture_path(live_session.pk), user=outsider.user) == ("close", 4404)
    assert await refusal(lecture_path(987654), user=assigned_student.user) == ("close", 4404)
    assert await refusal(lecture_path(live_session.pk)) == ("close", 4401)


def test_the_lecture_join_api_gives_the_professor_a_ticket_and_refuses_others(
    client, live_session, professor, assigned_student, outsider
):
    url = reverse("api:session-lecture-join", args=[live_session.pk])
    assert url == f"/api/v1/sessions/{live_session.pk}/lecture/join/"
    client.force_login(professor.user)
    body = client.post(url).json()
    assert body["ws_url"] == f"ws://testserver/ws/sessions/{live_session.pk}/lecture/"
    claims = ticket_verify(body["ticket"])
    assert (claims.user_id, claims.kind, claims.object_id) == (professor.user.pk, "lecture", live_session.pk)
    for user, status, code in ((assigned_student.user, 403, "forbidden"), (outsider.user, 404, "not_found")):
        client.force_login(user)
        response = client.post(url)
        assert response.status_code == status and response.json()["error"]["code"] == code


async def test_a_ticket_opens_the_lecture_socket_once(client, live_session, professor):
    await database_sync_to_async(client.force_login)(professor.user)
    response = await database_sync_to_async(client.post)(reverse("api:session-lecture-join", args=[live_session.pk]))
    ticket = response.json()["ticket"]
    socket = await open_socket(lecture_path(live_session.pk), origin=None, ticket=ticket)
    status = await socket.receive()
    assert status["type"] == "lecture.status" and status["data"]["session_id"] == live_session.pk
    await socket.close()
    assert await refusal(lecture_path(live_session.pk), origin=None, ticket=ticket) == ("close", 4401)


def _room_ready_with_a_question(room, student) -> None:
    room.tutor_status = "ready"
    room.save(update_fields=["tutor_status"])
    from sessions import live

    live.room_line_post(room=room, user=student.user, text="how many times does the loop run")


def _prompt(room_id: int) -> str:
    plan = room_tutor.room_turn_prepare(room_id)
    Message.objects.filter(pk=plan.reply_id).delete()
    return plan.messages[0]["content"]


async def test_lecture_speech_reaches_the_monitor_and_the_room_tutors_prompt(
    live_session, room, assigned_student, professor, monkeypatch
):
    use_fake_voice(monkeypatch, [ScriptedEngine("pocketsphinx", [LECTURE], partials=True)])
    monitor = await open_socket(f"/ws/sessions/{live_session.pk}/monitor/", user=professor.user)
    assert (await monitor.receive())["type"] == "session.status"
    lecture = await open_socket(lecture_path(live_session.pk), user=professor.user)
    assert (await lecture.receive())["type"] == "lecture.status"
    await say(lecture, ms=600)

    for socket in (lecture, monitor):
        partial = await until(socket, "transcript.partial")
        assert partial["seq"] is None and partial["data"]["room_id"] is None
        final = await until(socket, "transcript.final")
        assert final["seq"] == 1 and final["data"]["text"] == LECTURE
        assert final["data"]["room_id"] is None and final["data"]["source"] == "speech"
        assert final["data"]["speaker"] == {"id": professor.user.pk, "name": professor.user.display_name, "kind": "professor"}

    segment = await database_sync_to_async(TranscriptSegment.objects.get)(seq=1)
    assert (segment.room_id, segment.speaker_kind, segment.provider) == (None, "professor", "pocketsphinx")

    await database_sync_to_async(_room_ready_with_a_question)(room, assigned_student)
    prompt = await database_sync_to_async(_prompt)(room.pk)
    at = timezone.localtime(segment.created_at).strftime("%H:%M")
    assert "What the professor said recently in the lecture" in prompt
    assert f"[{at}] {LECTURE}" in prompt
    assert re.search(r"\[\d\d:\d\d\] a for loop over range five", prompt)
    for socket in (lecture, monitor):
        await socket.close()


async def test_lecture_lines_in_the_prompt_follow_the_setting(settings, live_session, room, assigned_student, professor):
    settings.LECTURE_LINES = 2

    def setup() -> None:
        from sessions import live

        for n in range(4):
            live.lecture_line_post(session=live_session, user=professor.user, text=f"lecture point number {n}")
        _room_ready_with_a_question(room, assigned_student)

    await database_sync_to_async(setup)()
    prompt = await database_sync_to_async(_prompt)(room.pk)
    assert "lecture point number 3" in prompt and "lecture point number 2" in prompt
    assert "lecture point number 1" not in prompt


async def test_lecture_speech_needs_a_live_session(professor, course, monkeypatch):
    session = await database_sync_to_async(factories.LiveSessionFactory)(course=course, professor=professor, status="draft")
    use_fake_voice(monkeypatch, [ScriptedEngine("pocketsphinx", ["hello class"])])
    lecture = await open_socket(lecture_path(session.pk), user=professor.user)
    assert (await lecture.receive())["type"] == "lecture.status"
    await say(lecture, ms=200)
    assert (await until(lecture, "error"))["data"]["code"] == "session_not_live"
    await lecture.close()


def test_the_monitor_page_shows_the_latest_lecture_lines_and_a_past_stt_switch(client, live_session, professor):
    from sessions import live

    for n in range(3):
        live.lecture_line_post(session=live_session, user=professor.user, text=f"today we look at loops part {n}")
    live.stt_switch_record(
        tenant_id=live_session.tenant_id, session_id=live_session.pk, room_id=None, course_id=live_session.course_id,
        user_id=professor.user.pk, from_engine="deepgram", to_engine="pocketsphinx", reason="503",
    )
    client.force_login(professor.user)
    page = client.get(reverse("session-monitor", args=[live_session.pk])).content.decode()
    block = page[page.index('id="lecture-lines"'):page.index('id="lecture-partial"')]
    assert [f"today we look at loops part {n}" in block for n in range(3)] == [True, True, True]
    assert "Speech recognition: deepgram failed (503); pocketsphinx took over." in page
