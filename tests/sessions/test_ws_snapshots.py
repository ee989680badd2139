"""What monitors and rooms receive on connect, built with a constant number of queries."""

from __future__ import annotations

import pytest

from sessions import selectors
from tests import factories
from tests.sessions.conftest import open_socket

pytestmark = pytest.mark.usefixtures("fast_passwords")


def _add_rooms(session, course, rooms: int, students_per_room: int, start: int) -> None:
    for number in range(start, start + rooms):
        room = factories.BreakoutRoomFactory(session=session, number=number)
        for _ in range(students_per_room):
            student = factories.EnrollmentFactory(course=course).student
            factories.RoomAssignmentFactory(room=room, student=student)


@pytest.mark.django_db(transaction=True)
async def test_monitor_gets_every_room_and_its_students_on_connect(
    live_session, room, other_room, assigned_student, student_of_other_room, professor
):
    socket = await open_socket(f"/ws/sessions/{live_session.id}/monitor/", user=professor.user)
    message = await socket.receive()
    assert message["type"] == "session.status"
    assert message["seq"] is None
    data = message["data"]
    assert {k: data[k] for k in ("id", "title", "status", "teaching_mode", "hint", "degraded", "last_seq")} == {
        "id": live_session.id, "title": "Loops lab", "status": "live",
        "teaching_mode": live_session.teaching_mode, "hint": "", "degraded": {}, "last_seq": 0,
    }
    keys = ("id", "name", "number", "status", "topic", "teaching_mode", "tutor_status", "students")
    assert [{k: r[k] for k in keys} for r in data["rooms"]] == [
        {
            "id": room.id, "name": "Room 1", "number": 1, "status": room.status, "topic": "for loops",
            "teaching_mode": live_session.teaching_mode, "tutor_status": "not_started",
            "students": [{"id": assigned_student.id, "name": assigned_student.user.display_name}],
        },
        {
            "id": other_room.id, "name": "Room 2", "number": 2, "status": other_room.status, "topic": "",
            "teaching_mode": live_session.teaching_mode, "tutor_status": "not_started",
            "students": [{"id": student_of_other_room.id, "name": student_of_other_room.user.display_name}],
        },
    ]
    await socket.close()


@pytest.mark.django_db(transaction=True)
async def test_room_gets_its_status_on_connect(room, assigned_student):
    socket = await open_socket(f"/ws/rooms/{room.id}/", user=assigned_student.user)
    message = await socket.receive()
    assert (message["type"], message["seq"]) == ("room.status", None)
    data = message["data"]
    keys = ("id", "name", "topic", "session_id", "session_status", "session_title", "teaching_mode", "students")
    assert {k: data[k] for k in keys} == {
        "id": room.id, "name": "Room 1", "topic": "for loops", "session_id": room.session_id,
        "session_status": "live", "session_title": "Loops lab", "teaching_mode": room.session.teaching_mode,
        "students": [{"id": assigned_student.id, "name": assigned_student.user.display_name}],
    }
    await socket.close()


@pytest.mark.django_db
def test_session_status_queries_do_not_grow_with_rooms_and_students(
    live_session, course, django_assert_max_num_queries
):
    _add_rooms(live_session, course, rooms=1, students_per_room=1, start=1)
    with django_assert_max_num_queries(2):
        small = selectors.session_status_for_monitor(session=live_session)
    _add_rooms(live_session, course, rooms=9, students_per_room=5, start=2)
    with django_assert_max_num_queries(2):
        big = selectors.session_status_for_monitor(session=live_session)
    assert len(small["rooms"]) == 1
    assert len(big["rooms"]) == 10
    assert sum(len(r["students"]) for r in big["rooms"]) == 46


@pytest.mark.django_db
def test_room_status_is_two_queries(room, course, django_assert_num_queries):
    for _ in range(5):
        factories.RoomAssignmentFactory(room=room, student=factories.EnrollmentFactory(course=course).student)
    with django_assert_num_queries(2):
        status = selectors.room_status(room=room)
    assert len(status["students"]) == 5
