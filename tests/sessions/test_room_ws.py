"""Breakout rooms and the monitor over real WebSockets: the room tutor answering a group, the
steering console, moves, replay, restart safety and isolation between sessions and tenants."""

from __future__ import annotations

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from django.utils import timezone

from sessions import live, orchestration
from sessions.models import Conversation, LiveSession, Message, RoomAssignment
from sessions.tutor import room_tutor, turn
from tests import factories
from tests.sessions.conftest import Socket, open_socket, refusal
from tests.sessions.tutor_fixtures import online_model
from tests.support.openai_standin import Reply

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_passwords")]

NAMES = ["Ada", "Ben", "Cleo", "Dev", "Eve", "Finn"]


@pytest.fixture(autouse=True)
def _answer_at_once(settings):
    settings.ROOM_TUTOR_DEBOUNCE_MS = 0


def _offline_chain():
    factories.LLMModelFactory(
        tenant=None, position=9, provider="offline", model_name="offline-socratic",
        base_url_setting="", api_key_setting="",
    )


def _build(course, professor, *, per_room: int, rooms: int, names=NAMES, prefix="s"):
    """A started session: `rooms` rooms of `per_room` students (first names from `names`)."""
    course.scope_terms = ["python", "loop", "for", "range", "list", "function"]
    course.save()
    for i in range(per_room * rooms):
        factories.EnrollmentFactory(
            course=course, student__user__username=f"{prefix}{i:02d}",
            student__user__first_name=names[i % len(names)], student__user__last_name=f"{prefix}{i:02d}",
        )
    session = orchestration.session_create(course=course, professor=professor, title="Loops lab", room_count=rooms)
    orchestration.session_start(session=session)
    layout = []
    for room in session.rooms.order_by("number"):
        members = [a.student for a in RoomAssignment.objects.filter(room=room).select_related("student__user").order_by("student__user__last_name")]
        layout.append((room, members))
    return LiveSession.objects.get(pk=session.pk), layout


build = database_sync_to_async(_build)


_until = Socket.until
_drain = Socket.drain


async def _connect_room(room, student, **kwargs):
    socket = await open_socket(f"/ws/rooms/{room.pk}/", user=student.user, **kwargs)
    assert (await socket.receive())["type"] == "room.status"
    return socket


async def _connect_monitor(session, professor, after_seq: int | None = None):
    query = f"?after_seq={after_seq}" if after_seq is not None else ""
    socket = await open_socket(f"/ws/sessions/{session.pk}/monitor/{query}", user=professor.user)
    assert (await socket.receive())["type"] == "session.status"
    return socket


async def test_a_line_reaches_its_room_and_the_monitor_and_the_tutor_answers_the_room(course, professor):
    await database_sync_to_async(_offline_chain)()
    session, [(room1, (ada, ben)), (room2, (cleo, _dev))] = await build(course, professor, per_room=2, rooms=2)
    monitor = await _connect_monitor(session, professor)
    ada_socket, ben_socket = await _connect_room(room1, ada), await _connect_room(room1, ben)
    cleo_socket = await _connect_room(room2, cleo)

    await ada_socket.send({"type": "chat.message", "data": {"text": "How does a for loop over range(5) work?"}})
    for socket in (ada_socket, ben_socket, monitor):
        line, _ = await _until(socket, "transcript.final")
        assert line["seq"] == 1
        assert line["data"]["speaker"] == {"id": ada.user_id, "name": ada.user.display_name, "kind": "student"}
        assert (line["data"]["room_id"], line["data"]["source"]) == (room1.pk, "text")

    reply, before = await _until(ben_socket, "tutor.message")
    assert [m["type"] for m in before][:1] == ["tutor.thinking"]
    assert any(m["type"] == "tutor.delta" for m in before)
    assert reply["seq"] == 2 and reply["data"]["offline"] is True and reply["data"]["room_id"] == room1.pk
    assert reply["data"]["speaker"]["kind"] == "tutor" and reply["data"]["text"]
    on_monitor, skipped = await _until(monitor, "tutor.message")
    assert on_monitor["data"]["segment_id"] == reply["data"]["segment_id"]
    assert not [m for m in skipped if m["type"] in ("tutor.delta", "tutor.thinking")]  # the monitor gets finals only
    assert await cleo_socket.nothing(0.3)
    for socket in (monitor, ada_socket, ben_socket, cleo_socket):
        await socket.close()


async def test_the_room_tutor_knows_who_said_what_and_invites_the_quiet_one(course, professor, settings, openai_standin):
    await database_sync_to_async(online_model)(settings, openai_standin)
    settings.ROOM_TUTOR_DEBOUNCE_MS = 400
    openai_standin.script(Reply("Ada and Ben, good start. Cleo, what do you think range(3) gives?"))
    _session, [(room, (ada, ben, _cleo))] = await build(course, professor, per_room=3, rooms=1)
    ada_socket, ben_socket = await _connect_room(room, ada), await _connect_room(room, ben)

    await ada_socket.send({"type": "chat.message", "data": {"text": "I think a for loop runs once per item"}})
    await _until(ben_socket, "transcript.final")
    await ben_socket.send({"type": "chat.message", "data": {"text": "But what does range(5) give?"}})
    reply, _ = await _until(ada_socket, "tutor.message")
    assert reply["data"]["model"] == "model-a"
    assert len(openai_standin.requests) == 1  # one turn for both lines, not one each
    system = openai_standin.requests[0]["json"]["messages"][0]["content"]
    assert "breakout room with Ada, Ben, Cleo" in system
    assert "Ada: I think a for loop runs once per item\nBen: But what does range(5) give?" in system
    assert "Cleo has said little so far: invite them in by name" in system
    assert "The latest message is from Ben" in system
    assert "Latest messages in the room:" in system
    for socket in (ada_socket, ben_socket):
        await socket.close()


async def test_mode_switch_and_hint_reach_the_right_rooms_and_change_the_prompt(course, professor, settings, openai_standin):
    await database_sync_to_async(online_model)(settings, openai_standin)
    session, [(room1, (ada,)), (room2, (ben,))] = await build(course, professor, per_room=1, rooms=2)
    monitor = await _connect_monitor(session, professor)
    ada_socket, ben_socket = await _connect_room(room1, ada), await _connect_room(room2, ben)

    await monitor.send({"type": "session.mode", "data": {"mode": "quiz_lock", "room_id": room1.pk}})
    status, _ = await _until(ada_socket, "room.status")
    assert status["data"]["teaching_mode"] == "quiz_lock"
    await monitor.send({"type": "tutor.hint", "data": {"text": "Remind them that range stops before its end."}})
    hinted, _ = await _until(ben_socket, "session.status", where=lambda data: data["hint"])
    assert hinted["data"]["hint"] == "Remind them that range stops before its end."
    assert [r["teaching_mode"] for r in hinted["data"]["rooms"]] == ["quiz_lock", "socratic"]

    await ada_socket.send({"type": "chat.message", "data": {"text": "What is the answer to question 2 about for loops?"}})
    await _until(ada_socket, "tutor.message")
    await ben_socket.send({"type": "chat.message", "data": {"text": "How does a for loop work?"}})
    await _until(ben_socket, "tutor.message")
    room1_prompt, room2_prompt = (r["json"]["messages"][0]["content"] for r in openai_standin.requests)
    assert "Teaching mode: quiz lock" in room1_prompt and "Never give answers" in room1_prompt
    assert "Teaching mode: Socratic" in room2_prompt and "quiz lock" not in room2_prompt
    for prompt in (room1_prompt, room2_prompt):
        assert "keep this in mind now: Remind them that range stops before its end." in prompt

    # Every room at once.
    await monitor.send({"type": "session.mode", "data": {"mode": "qa"}})
    await _until(ben_socket, "session.status", where=lambda data: data["teaching_mode"] == "qa")
    modes = await database_sync_to_async(
        lambda: sorted(Conversation.objects.filter(room__session=session).values_list("mode", flat=True))
    )()
    assert modes == ["qa", "qa"]
    for socket in (monitor, ada_socket, ben_socket):
        await socket.close()


async def test_broadcasts_reach_the_chosen_rooms_only(course, professor):
    session, [(room1, (ada,)), (room2, (ben,))] = await build(course, professor, per_room=1, rooms=2)
    monitor = await _connect_monitor(session, professor)
    ada_socket, ben_socket = await _connect_room(room1, ada), await _connect_room(room2, ben)

    await monitor.send({"type": "room.broadcast", "data": {"room_id": room1.pk, "text": "Room 1: try range(3)"}})
    got, _ = await _until(ada_socket, "room.broadcast")
    assert got["data"]["text"] == "Room 1: try range(3)" and got["data"]["speaker"]["kind"] == "professor"
    assert (await _until(monitor, "room.broadcast"))[0]["seq"] == got["seq"]
    assert await ben_socket.nothing(0.3)

    await monitor.send({"type": "room.broadcast", "data": {"room_id": "all", "text": "Five minutes left"}})
    for socket in (ada_socket, ben_socket):
        message, _ = await _until(socket, "room.broadcast")
        assert message["data"]["text"] == "Five minutes left"
    await monitor.send({"type": "room.broadcast", "data": {"room_id": 999999, "text": "Hello"}})
    error, _ = await _until(monitor, "error")
    assert error["data"]["code"] == "not_found"
    await monitor.send({"type": "room.broadcast", "data": {"text": "   "}})
    assert (await _until(monitor, "error"))[0]["data"]["code"] == "empty_message"
    await monitor.send({"type": "session.mode", "data": {"mode": "chaos"}})
    assert (await _until(monitor, "error"))[0]["data"]["code"] == "invalid"
    for socket in (monitor, ada_socket, ben_socket):
        await socket.close()


async def test_a_moved_student_is_switched_over_and_hears_nothing_more_of_the_old_room(course, professor):
    session, [(room1, (ada, ben)), (room2, (cleo, _dev))] = await build(course, professor, per_room=2, rooms=2)
    monitor = await _connect_monitor(session, professor)
    ada_old, ben_socket = await _connect_room(room1, ada), await _connect_room(room1, ben)

    await monitor.send({"type": "assignment.move", "data": {"student_id": ada.pk, "room_id": room2.pk}})
    moved, _ = await _until(ada_old, "room.moved")
    assert moved["data"] == {"from_room": room1.pk, "to_room": room2.pk, "ws_url": f"/ws/rooms/{room2.pk}/"}
    await ada_old.expect_close(4409)
    status, _ = await _until(ben_socket, "room.status")
    assert [s["id"] for s in status["data"]["students"]] == [ben.pk]

    ada_new = await _connect_room(room2, ada)
    await ben_socket.send({"type": "chat.message", "data": {"text": "Anyone still here in room 1?"}})
    await _until(ben_socket, "transcript.final")
    cleo_socket = await _connect_room(room2, cleo)
    await cleo_socket.send({"type": "chat.message", "data": {"text": "Welcome Ada"}})
    line, _ = await _until(ada_new, "transcript.final")
    assert line["data"]["text"] == "Welcome Ada"  # room 2's line, and not room 1's before it
    assert await refusal(f"/ws/rooms/{room1.pk}/", user=ada.user) == ("close", 4403)
    for socket in (monitor, ben_socket, ada_new, cleo_socket):
        await socket.close()


async def test_replay_after_a_disconnect_gives_every_missed_event_once_in_order(course, professor):
    session, [(room1, (ada,)), (room2, (ben,))] = await build(course, professor, per_room=1, rooms=2)
    monitor = await _connect_monitor(session, professor)
    ada_socket = await _connect_room(room1, ada)
    await ada_socket.send({"type": "chat.message", "data": {"text": "first"}})
    first, _ = await _until(monitor, "transcript.final")
    await monitor.close()
    await ada_socket.close()

    def missed():
        live.room_line_post(room=room1, user=ada.user, text="second")
        live.room_line_post(room=room2, user=ben.user, text="third")
        live.room_broadcast(session=session, by=professor.user, text="fourth")
        live.room_line_post(room=room1, user=ada.user, text="fifth")

    await database_sync_to_async(missed)()
    monitor = await _connect_monitor(session, professor, after_seq=first["seq"])
    replayed = [await monitor.receive() for _ in range(5)]
    assert [m["seq"] for m in replayed] == [2, 3, 4, 5, 6]
    assert [m["data"]["text"] for m in replayed] == ["second", "third", "fourth", "fourth", "fifth"]
    assert [m["type"] for m in replayed] == ["transcript.final", "transcript.final", "room.broadcast", "room.broadcast", "transcript.final"]

    room_socket = await open_socket(f"/ws/rooms/{room1.pk}/?after_seq={first['seq']}", user=ada.user)
    assert (await room_socket.receive())["type"] == "room.status"
    room_replay = [await room_socket.receive() for _ in range(3)]
    assert [(m["seq"], m["data"]["text"]) for m in room_replay] == [(2, "second"), (4, "fourth"), (6, "fifth")]

    # Then live, without duplicates.
    await room_socket.send({"type": "chat.message", "data": {"text": "sixth"}})
    assert [(m["seq"], m["data"]["text"]) for m in await _drain(monitor) if m["type"] == "transcript.final"] == [(7, "sixth")]
    assert [m["seq"] for m in await _drain(room_socket) if m["seq"]] == [7]
    for socket in (monitor, room_socket):
        await socket.close()


async def test_a_restart_loses_nothing_the_session_is_rebuilt_from_the_database(course, professor):
    session, [(room, (ada, ben))] = await build(course, professor, per_room=2, rooms=1)

    def before_restart():
        live.room_line_post(room=room, user=ada.user, text="What does range(3) give?")
        live.room_broadcast(session=session, by=professor.user, text="Think about zero")
        conversation = Conversation.objects.get(room=room)
        reply = Message.objects.create(conversation=conversation, role="tutor", status="streaming", text="")
        Message.objects.filter(pk=reply.pk).update(created_at=timezone.now() - timedelta(minutes=10))
        return reply.pk

    stuck_reply = await database_sync_to_async(before_restart)()
    # A new process: no channel layer state, no running turns, no debounce timers.
    channel_layers.backends = {}
    turn._running.clear()
    room_tutor._debounce.clear()

    monitor = await open_socket(f"/ws/sessions/{session.pk}/monitor/?after_seq=0", user=professor.user)
    snapshot = await monitor.receive()
    assert snapshot["data"]["status"] == "live"
    assert [s["id"] for s in snapshot["data"]["rooms"][0]["students"]] == sorted([ada.pk, ben.pk], key=lambda pk: [ada.pk, ben.pk].index(pk))
    assert [(m["type"], m["data"]["text"]) for m in [await monitor.receive(), await monitor.receive()]] == [
        ("transcript.final", "What does range(3) give?"), ("room.broadcast", "Think about zero"),
    ]
    ben_socket = await _connect_room(room, ben)  # connecting closes the reply the dead process left
    status = await database_sync_to_async(lambda: Message.objects.get(pk=stuck_reply).status)()
    assert status == "interrupted"
    await ben_socket.send({"type": "chat.message", "data": {"text": "Is it 0, 1, 2?"}})
    line, _ = await _until(monitor, "transcript.final")
    assert line["seq"] == 3
    for socket in (monitor, ben_socket):
        await socket.close()


async def test_many_clients_in_two_sessions_of_two_tenants_never_cross(course, professor, other_tenant):
    """No tutor here (no model chain): only the students' lines travel."""
    other_professor = await database_sync_to_async(factories.ProfessorFactory)(user__tenant=other_tenant)
    other_course = await database_sync_to_async(factories.CourseFactory)(tenant=other_tenant, code="HIST1")
    await database_sync_to_async(other_course.professors.add)(other_professor)
    sessions = [
        await build(course, professor, per_room=3, rooms=3, prefix="a"),
        await build(other_course, other_professor, per_room=3, rooms=3, prefix="b"),
    ]
    monitors = [
        await _connect_monitor(sessions[0][0], professor),
        await _connect_monitor(sessions[1][0], other_professor),
    ]
    sockets = []  # (session, room, student, socket)
    for session, layout in sessions:
        for room, members in layout:
            for student in members:
                sockets.append((session, room, student, await _connect_room(room, student)))
    for _session, room, student, socket in sockets:
        await socket.send({"type": "chat.message", "data": {"text": f"I am {student.user.username} in room {room.pk}"}})

    for session, room, _student, socket in sockets:
        lines = [m for m in await _drain(socket) if m["type"] == "transcript.final"]
        assert len(lines) == 3
        assert {(m["data"]["session_id"], m["data"]["room_id"]) for m in lines} == {(session.pk, room.pk)}
    for (session, _layout), monitor in zip(sessions, monitors, strict=True):
        lines = [m for m in await _drain(monitor) if m["type"] == "transcript.final"]
        assert len(lines) == 9
        assert {m["data"]["session_id"] for m in lines} == {session.pk}
        assert sorted(m["seq"] for m in lines) == list(range(1, 10))
    # Another tenant's room is unknown (4404), a room of one's own session but not one's own 4403.
    a_student = sockets[0][2]
    foreign_room = sessions[1][1][0][0]
    assert await refusal(f"/ws/rooms/{foreign_room.pk}/", user=a_student.user) == ("close", 4404)
    assert await refusal(f"/ws/sessions/{sessions[1][0].pk}/monitor/", user=professor.user) == ("close", 4404)
    neighbour_room = sessions[0][1][1][0]
    assert await refusal(f"/ws/rooms/{neighbour_room.pk}/", user=a_student.user) == ("close", 4403)
    assert await refusal(f"/ws/sessions/{sessions[0][0].pk}/monitor/", user=a_student.user) == ("close", 4403)
    for *_, socket in sockets:
        await socket.close()
    for monitor in monitors:
        await monitor.close()


async def test_bad_input_in_a_room_gets_errors_and_keeps_nothing(course, professor):
    session, [(room, (ada,))] = await build(course, professor, per_room=1, rooms=1)
    ada_socket = await _connect_room(room, ada)
    await ada_socket.send({"type": "chat.message", "data": {"text": "   "}})
    assert (await _until(ada_socket, "error"))[0]["data"]["code"] == "empty_message"
    await ada_socket.send({"type": "chat.message", "data": {"text": 42}})
    assert (await _until(ada_socket, "error"))[0]["data"]["code"] == "invalid_message"
    prof_socket = await _connect_room(room, professor)
    await prof_socket.send({"type": "chat.message", "data": {"text": "hello"}})
    assert (await _until(prof_socket, "error"))[0]["data"]["code"] == "forbidden"
    assert await refusal("/ws/rooms/987654/", user=ada.user) == ("close", 4404)

    await database_sync_to_async(orchestration.session_end)(session=session)
    ended, _ = await _until(ada_socket, "session.status")
    assert ended["data"]["status"] == "ended"
    await ada_socket.expect_close(4000)
    segments = await database_sync_to_async(lambda: session.segments.count())()
    assert segments == 0
    await prof_socket.close()
