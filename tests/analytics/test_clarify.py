# ruff: noqa: F811  (pytest fixtures imported from live_fixtures are test arguments)
""""Clarify for everyone": from the monitor socket or the API, every tutor's next prompt asks for
a brief clarification, every room is told, and the radar marks the topic clarified."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from analytics import live as radar
from sessions import live
from sessions.models import LiveSession, Speaker, TranscriptSegment
from sessions.tutor import room_tutor
from tests import factories
from tests.analytics.live_fixtures import (  # noqa: F401  (fixtures)
    _radar_in_line,
    ada,
    ben,
    connect_monitor,
    connect_room,
    live_session,
    post_line,
    room1,
    room2,
    until,
)

pytestmark = pytest.mark.django_db(transaction=True)

HINT = "Several students are confused about recursion; clarify it briefly at the next turn."


def _tutor_prompt(room) -> str:
    """The system prompt of the room tutor's next reply, as the room tutor builds it."""
    plan = room_tutor.room_turn_prepare(room.pk)
    assert plan is not None
    return plan.messages[0]["content"]


async def test_clarify_from_the_monitor_hints_every_tutor_tells_every_room_and_marks_the_radar(
    live_session, professor, room1, room2, ada, ben
):
    monitor = await connect_monitor(live_session, professor.user)
    ada_socket, ben_socket = await connect_room(room1, ada), await connect_room(room2, ben)
    await post_line(room1, ada, "I don't get recursion")
    await until(monitor, "analytics.update")

    await monitor.send({"type": "confusion.clarify", "data": {"topic": "recursion", "text": "Start from the base case."}})

    for socket, room in ((ada_socket, room1), (ben_socket, room2)):
        told, _ = await until(socket, "room.broadcast")
        assert told["data"]["text"] == "Start from the base case."
        assert told["data"]["room_id"] == room.pk and told["data"]["speaker"]["kind"] == "professor"
    status, _ = await until(monitor, "session.status", where=lambda data: data["hint"])
    assert status["data"]["hint"] == f"{HINT} The professor adds: Start from the base case."
    update, _ = await until(monitor, "analytics.update", where=lambda data: data["radar"][0]["clarified"])
    clarified = update["data"]["radar"][0]["clarified"]
    assert clarified["by"] == {"id": professor.user_id, "name": professor.user.display_name}
    assert clarified["at"].endswith("Z") and update["data"]["radar"][0]["since_clarified"] == 0

    # The tutors' next prompts carry it (a student line in each room to answer).
    await post_line(room1, ada, "so what happens at the end?")
    await post_line(room2, ben, "and for lists?")
    for room in (room1, room2):
        prompt = await database_sync_to_async(_tutor_prompt)(room)
        assert "keep this in mind now:" in prompt and HINT in prompt and "Start from the base case." in prompt
    for socket in (monitor, ada_socket, ben_socket):
        await socket.close()


def test_clarify_without_text_tells_the_rooms_about_the_topic_and_keeps_the_professors_hint(live_session, professor, room1, room2):
    live.session_hint_set(session=live_session, text="Mention the call stack.")
    result = live.session_clarify(session=live_session, by=professor.user, topic="  base   case ")
    assert result["topic"] == "base case"
    assert result["text"] == live.CLARIFY_DEFAULT_BROADCAST.format(topic="base case")
    rows = TranscriptSegment.objects.filter(session=live_session, speaker_kind=Speaker.PROFESSOR).order_by("seq")
    assert [(s.room_id, s.text, s.seq) for s in rows] == [
        (room1.pk, result["text"], result["seqs"][0]), (room2.pk, result["text"], result["seqs"][1])
    ]
    hint = LiveSession.objects.get(pk=live_session.pk).tutor_hint
    assert hint.splitlines()[0] == "Mention the call stack."
    # Clarifying the same topic again replaces its line; another topic adds one.
    live.session_clarify(session=live_session, by=professor.user, topic="base case", text="Again, slowly.")
    live.session_clarify(session=live_session, by=professor.user, topic="loops")
    lines = LiveSession.objects.get(pk=live_session.pk).tutor_hint.splitlines()
    assert lines == [
        "Mention the call stack.",
        "Several students are confused about base case; clarify it briefly at the next turn. The professor adds: Again, slowly.",
        "Several students are confused about loops; clarify it briefly at the next turn.",
    ]
    assert radar.radar_state(live_session.pk)["clarified"]["loops"]["by"]["id"] == professor.user_id


def test_the_hint_never_exceeds_its_limit():
    hint = "\n".join(f"line {i} " + "x" * 300 for i in range(10))
    merged = live.clarify_hint_merge(hint, topic="recursion", text="y" * 900)
    assert len(merged) <= live.HINT_MAX_CHARS and merged.splitlines()[-1].startswith(HINT)


async def test_bad_clarify_commands_get_an_error(live_session, professor, room1):
    monitor = await connect_monitor(live_session, professor.user)
    for data, code in (
        ({}, "invalid"),
        ({"topic": "   "}, "invalid"),
        ({"topic": 12}, "invalid"),
        ({"topic": "x" * 101}, "message_too_long"),
        ({"topic": "recursion", "text": ["no"]}, "invalid"),
        ({"topic": "recursion", "text": "y" * 1001}, "message_too_long"),
        ("recursion", "invalid"),
    ):
        await monitor.send({"type": "confusion.clarify", "data": data})
        error, _ = await until(monitor, "error")
        assert error["data"]["code"] == code, data
    await database_sync_to_async(LiveSession.objects.filter(pk=live_session.pk).update)(status="ended")
    await monitor.send({"type": "confusion.clarify", "data": {"topic": "recursion"}})
    error, _ = await until(monitor, "error")
    assert error["data"]["code"] == "session_ended"
    assert not await database_sync_to_async(
        TranscriptSegment.objects.filter(session=live_session, speaker_kind=Speaker.PROFESSOR).exists
    )()
    await monitor.close()


# --- API ---------------------------------------------------------------------------------------


def _clarify(client, session_id: int, body, headers) -> object:
    return client.post(f"/api/v1/sessions/{session_id}/clarify/", body, content_type="application/json", **headers)


def test_api_clarify_for_the_sessions_professor(client, api_headers, live_session, professor, room1, room2):
    response = _clarify(client, live_session.pk, {"topic": "recursion", "text": "Think of Russian dolls."}, api_headers(professor.user))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["topic"] == "recursion" and body["text"] == "Think of Russian dolls."
    assert body["hint"] == f"{HINT} The professor adds: Think of Russian dolls."
    assert len(body["seqs"]) == 2
    assert LiveSession.objects.get(pk=live_session.pk).tutor_hint == body["hint"]


def test_api_clarify_refuses_students_other_tenants_and_bad_input(
    client, api_headers, assert_api_error, live_session, professor, room1, ada, outsider
):
    assert_api_error(_clarify(client, live_session.pk, {"topic": "recursion"}, api_headers(ada.user)), 403)
    assert_api_error(_clarify(client, live_session.pk, {"topic": "recursion"}, api_headers(outsider.user)), 404)
    assert_api_error(_clarify(client, live_session.pk, {"topic": "recursion"}, {}), 401)
    mine = api_headers(professor.user)
    for body in ({}, {"topic": ""}, {"topic": 5}, {"topic": "x" * 101}, {"topic": "recursion", "text": "y" * 1001},
                 {"topic": "recursion", "text": None}):
        error = assert_api_error(_clarify(client, live_session.pk, body, mine), 400)
        assert set(error["fields"]) <= {"topic", "text"}, body
    assert_api_error(_clarify(client, 999999, {"topic": "recursion"}, mine), 404)
    draft = factories.LiveSessionFactory(course=live_session.course, professor=professor)
    assert_api_error(_clarify(client, draft.pk, {"topic": "recursion"}, mine), 409, "session_not_live")
    LiveSession.objects.filter(pk=live_session.pk).update(status="ended")
    assert_api_error(_clarify(client, live_session.pk, {"topic": "recursion"}, mine), 409, "session_ended")
    assert not TranscriptSegment.objects.filter(speaker_kind=Speaker.PROFESSOR).exists()


def test_the_monitor_form_clarifies_without_javascript(client, live_session, professor, room1, ada):
    client.force_login(professor.user)
    response = client.post(f"/sessions/{live_session.pk}/clarify/", {"topic": "recursion", "text": ""}, follow=True)
    assert response.redirect_chain[-1][0] == f"/sessions/{live_session.pk}/monitor/"
    assert "Every tutor will clarify recursion; the rooms were told." in response.content.decode()
    assert HINT in LiveSession.objects.get(pk=live_session.pk).tutor_hint
    response = client.post(f"/sessions/{live_session.pk}/clarify/", {"topic": ""}, follow=True)
    assert "Name the topic to clarify." in response.content.decode()
    client.force_login(ada.user)
    assert client.post(f"/sessions/{live_session.pk}/clarify/", {"topic": "recursion"}).status_code == 403


def test_a_room_topic_typed_with_odd_spaces_is_the_topic_a_clarify_names():
    """The clarify command tidies its topic; the radar's key for a room topic must match it, or
    the radar never shows that topic clarified."""
    from analytics import confusion

    topic = confusion.line_topic("I'm lost", terms=["recursion"], room_topic="Nested   Loops ")
    assert topic == confusion.topic_key("nested loops") == "nested loops"
    assert confusion.line_topics("recursion  again?", terms=["Recursion "]) == ["recursion"]
