"""The live sessions API (sessions/api/live.py) and transcript exports (sessions/exports.py)."""

from __future__ import annotations

import csv
import io
import json

import pytest
import webvtt
from django.test import Client

from sessions import live
from sessions.models import LiveSession, RoomAssignment, TranscriptSegment
from tests import factories

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_passwords")]


@pytest.fixture(autouse=True)
def _offline_chain(db):
    factories.LLMModelFactory(
        tenant=None, position=1, provider="offline", model_name="offline-socratic",
        base_url_setting="", api_key_setting="",
    )


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _students(course, n: int):
    return [factories.EnrollmentFactory(course=course, student__user__username=f"st{i}").student for i in range(n)]


def _post(client, url, data=None):
    return client.post(url, data=json.dumps(data or {}), content_type="application/json")


def test_a_professor_builds_starts_and_ends_a_session(course, professor, assert_api_error):
    _students(course, 5)
    client = _client(professor.user)
    created = _post(client, "/api/v1/sessions/", {"course": course.pk, "title": "Loops lab", "room_count": 2, "topics": ["for", "while"]})
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["status"], body["room_count"]) == ("draft", 2)
    assert [(r["name"], r["topic"], len(r["students"])) for r in body["rooms"]] == [("Room 1", "for", 3), ("Room 2", "while", 2)]

    started = _post(client, f"/api/v1/sessions/{body['id']}/start/")
    assert started.status_code == 200
    result = started.json()
    assert result["status"] == "live" and result["started_now"] is True and result["degraded"] == {}
    assert [len(r["students"]) for r in result["rooms"]] == [3, 2]
    assert result["counts"]["tutors_ready"] == 2
    again = _post(client, f"/api/v1/sessions/{body['id']}/start/").json()
    assert again["started_now"] is False and again["rooms"] == result["rooms"]

    ended = _post(client, f"/api/v1/sessions/{body['id']}/end/")
    assert ended.status_code == 200 and ended.json()["status"] == "ended"
    assert_api_error(_post(client, f"/api/v1/sessions/{body['id']}/start/"), 409, "session_ended")


def test_builder_bad_input_gets_clear_errors_and_writes_nothing(course, professor, student, outsider, tenant, assert_api_error):
    client = _client(professor.user)
    assert_api_error(_post(client, "/api/v1/sessions/", {"course": course.pk, "room_count": 2}), 400, "invalid")
    assert_api_error(_post(client, "/api/v1/sessions/", {"course": course.pk, "title": "x", "room_count": 0}), 400, "invalid")
    assert_api_error(_post(client, "/api/v1/sessions/", {"course": course.pk, "title": "x", "teaching_mode": "lecture"}), 400, "invalid")
    foreign = factories.CourseFactory(tenant=outsider.tenant, code="X1")
    assert_api_error(_post(client, "/api/v1/sessions/", {"course": foreign.pk, "title": "x"}), 404, "not_found")
    not_mine = factories.CourseFactory(tenant=tenant, code="OTHER")
    # A course of the tenant this professor does not teach is not one of theirs to see.
    assert_api_error(_post(client, "/api/v1/sessions/", {"course": not_mine.pk, "title": "x"}), 404, "not_found")
    assert_api_error(_post(_client(student.user), "/api/v1/sessions/", {"course": course.pk, "title": "x"}), 403, "forbidden")
    assert not LiveSession.objects.exists()
    # Starting with nobody enrolled: a 409 and the session stays a draft.
    empty_course = factories.CourseFactory(tenant=tenant, code="EMPTY")
    empty_course.professors.add(professor)
    draft = _post(client, "/api/v1/sessions/", {"course": empty_course.pk, "title": "Nobody"}).json()
    assert_api_error(_post(client, f"/api/v1/sessions/{draft['id']}/start/"), 409, "no_students")
    assert LiveSession.objects.get(pk=draft["id"]).status == "draft"


def test_unknown_and_foreign_ids_are_404_and_other_roles_403(course, professor, student, outsider, assert_api_error):
    _students(course, 2)
    client = _client(professor.user)
    session_id = _post(client, "/api/v1/sessions/", {"course": course.pk, "title": "Lab"}).json()["id"]
    assert_api_error(client.get("/api/v1/sessions/999999/"), 404, "not_found")
    assert_api_error(_client(outsider.user).get(f"/api/v1/sessions/{session_id}/"), 404, "not_found")
    assert_api_error(_post(_client(outsider.user), f"/api/v1/sessions/{session_id}/start/"), 404, "not_found")
    assert_api_error(_post(_client(student.user), f"/api/v1/sessions/{session_id}/start/"), 403, "forbidden")
    room_id = LiveSession.objects.get(pk=session_id).rooms.get().pk
    assert_api_error(_client(outsider.user).get(f"/api/v1/rooms/{room_id}/transcript/"), 404, "not_found")
    assert_api_error(_client(outsider.user).get(f"/api/v1/sessions/{session_id}/transcript/vtt/"), 404, "not_found")


def test_assignments_broadcast_mode_and_hint_through_the_api(course, professor, tenant, assert_api_error):
    students = _students(course, 4)
    client = _client(professor.user)
    session_id = _post(client, "/api/v1/sessions/", {"course": course.pk, "title": "Lab", "room_count": 2}).json()["id"]
    session = LiveSession.objects.get(pk=session_id)
    room1, room2 = session.rooms.order_by("number")
    moved = _post(client, f"/api/v1/sessions/{session_id}/assignments/", {"student": students[0].pk, "room": room2.pk})
    assert moved.status_code == 200
    assert RoomAssignment.objects.get(session=session, student=students[0]).room == room2
    stranger = factories.EnrollmentFactory(course=factories.CourseFactory(tenant=tenant, code="ART")).student
    assert_api_error(
        _post(client, f"/api/v1/sessions/{session_id}/assignments/", {"student": stranger.pk, "room": room1.pk}), 400, "invalid"
    )
    assert_api_error(_post(client, f"/api/v1/sessions/{session_id}/broadcast/", {"text": "hi"}), 409, "session_not_live")

    _post(client, f"/api/v1/sessions/{session_id}/start/")
    sent = _post(client, f"/api/v1/sessions/{session_id}/broadcast/", {"text": "Five minutes left", "room": "all"})
    assert sent.status_code == 201
    assert [s["event"]["type"] for s in sent.json()] == ["room.broadcast", "room.broadcast"]
    one = _post(client, f"/api/v1/sessions/{session_id}/broadcast/", {"text": "Room 2 only", "room": room2.pk})
    assert [s["room"] for s in one.json()] == [room2.pk]
    assert_api_error(_post(client, f"/api/v1/sessions/{session_id}/broadcast/", {"text": "x", "room": "two"}), 400, "invalid")

    mode = _post(client, f"/api/v1/sessions/{session_id}/mode/", {"mode": "quiz_lock", "room": room1.pk}).json()
    assert [r["teaching_mode"] for r in mode["rooms"]] == ["quiz_lock", "socratic"]
    hint = _post(client, f"/api/v1/sessions/{session_id}/hint/", {"text": "Mention off-by-one errors."})
    assert hint.json()["hint"] == "Mention off-by-one errors."


def test_room_transcript_pages_in_seq_order_for_its_students(course, professor, assert_api_error):
    students = _students(course, 2)
    client = _client(professor.user)
    session_id = _post(client, "/api/v1/sessions/", {"course": course.pk, "title": "Lab", "room_count": 2}).json()["id"]
    _post(client, f"/api/v1/sessions/{session_id}/start/")
    session = LiveSession.objects.get(pk=session_id)
    by_student = {a.student_id: a.room for a in RoomAssignment.objects.filter(session=session)}
    room = by_student[students[0].pk]
    live.room_line_post(room=room, user=students[0].user, text="first")
    live.room_broadcast(session=session, by=professor.user, text="second")
    live.room_line_post(room=room, user=students[0].user, text="third")

    page = _client(students[0].user).get(f"/api/v1/rooms/{room.pk}/transcript/").json()
    # One seq for the session: the broadcast's copy for the other room took a number too.
    broadcast_seq = 2 if room.number == 1 else 3
    assert [(s["seq"], s["text"], s["event"]["type"]) for s in page["results"]] == [
        (1, "first", "transcript.final"), (broadcast_seq, "second", "room.broadcast"), (4, "third", "transcript.final"),
    ]
    after = _client(students[0].user).get(f"/api/v1/rooms/{room.pk}/transcript/?after_seq={broadcast_seq}").json()
    assert [s["seq"] for s in after["results"]] == [4]
    assert_api_error(_client(students[0].user).get(f"/api/v1/rooms/{room.pk}/transcript/?after_seq=x"), 400, "invalid")
    other_room = by_student[students[1].pk]
    assert_api_error(_client(students[0].user).get(f"/api/v1/rooms/{other_room.pk}/transcript/"), 403, "forbidden")
    listing = _client(students[0].user).get("/api/v1/sessions/?status=live").json()
    assert [(s["id"], s["my_room"]) for s in listing["results"]] == [(session_id, room.pk)]


@pytest.fixture
def transcript(course, professor):
    """A live session with a room transcript holding awkward text."""
    students = _students(course, 2)
    client = _client(professor.user)
    session_id = _post(client, "/api/v1/sessions/", {"course": course.pk, "title": "Loops --> lab", "room_count": 1}).json()["id"]
    _post(client, f"/api/v1/sessions/{session_id}/start/")
    session = LiveSession.objects.get(pk=session_id)
    room = session.rooms.get()
    live.room_line_post(room=room, user=students[0].user, text="Is x < y --> True?\n\nTwo paragraphs & more")
    live.room_line_post(room=room, user=students[1].user, text="=SUM(A1:A3) is not code here")
    live.room_broadcast(session=session, by=professor.user, text="Five minutes left")
    TranscriptSegment.objects.filter(session=session, seq=1).update(start_ms=1000, end_ms=1000)
    TranscriptSegment.objects.filter(session=session, seq=2).update(start_ms=1600, end_ms=1600)
    TranscriptSegment.objects.filter(session=session, seq=3).update(start_ms=4000, end_ms=6500)
    return session, room, students


def test_the_webvtt_export_parses_with_cues_in_order(transcript, professor, tmp_path):
    session, room, students = transcript
    response = _client(professor.user).get(f"/api/v1/rooms/{room.pk}/transcript/vtt/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/vtt")
    assert response["Content-Disposition"] == f'attachment; filename="session-{session.pk}-room-1.vtt"'
    path = tmp_path / "room.vtt"
    path.write_bytes(response.content)
    captions = webvtt.read(str(path))
    assert [(c.start, c.end) for c in captions] == [
        ("00:00:01.000", "00:00:01.600"),  # a typed line lasts until the next line begins
        ("00:00:01.600", "00:00:03.250"),  # reading time: 5 words x 330 ms
        ("00:00:04.000", "00:00:06.500"),  # its own duration
    ]
    assert captions[0].voice == students[0].user.display_name
    assert captions[0].text == "Is x &lt; y --&gt; True?\nTwo paragraphs &amp; more"
    assert captions[2].text == "Five minutes left"
    session_vtt = _client(professor.user).get(f"/sessions/{session.pk}/transcript.vtt")
    assert session_vtt.status_code == 200 and b"[Room 1] Five minutes left" in session_vtt.content


def test_csv_and_json_exports_parse_and_defuse_formulas(transcript, professor):
    session, room, students = transcript
    client = _client(professor.user)
    rows = list(csv.DictReader(io.StringIO(client.get(f"/api/v1/sessions/{session.pk}/transcript/csv/").content.decode())))
    assert [(r["seq"], r["speaker_kind"], r["room"]) for r in rows] == [("1", "student", "Room 1"), ("2", "student", "Room 1"), ("3", "professor", "Room 1")]
    assert rows[0]["text"] == "Is x < y --> True?\n\nTwo paragraphs & more"
    assert rows[1]["text"] == "'=SUM(A1:A3) is not code here"
    document = json.loads(client.get(f"/rooms/{room.pk}/transcript.json").content)
    assert document["session"]["title"] == "Loops --> lab"
    assert [s["seq"] for s in document["segments"]] == [1, 2, 3]
    assert document["room"] == {"id": room.pk, "name": "Room 1", "topic": ""}
    assert client.get(f"/rooms/{room.pk}/transcript.pdf").status_code == 404
    # A student of the room may export it; not the session.
    assert _client(students[0].user).get(f"/rooms/{room.pk}/transcript.csv").status_code == 200
    assert _client(students[0].user).get(f"/sessions/{session.pk}/transcript.csv").status_code == 403


def test_monitor_snapshot_queries_stay_constant_from_2_to_50_rooms(course, professor, django_assert_max_num_queries):
    from sessions import selectors

    def grow(session, rooms: int, start: int):
        for number in range(start, start + rooms):
            room = factories.BreakoutRoomFactory(session=session, number=number)
            for i in range(5):
                student = factories.EnrollmentFactory(course=course).student
                factories.RoomAssignmentFactory(room=room, student=student, session=session)
                factories.TranscriptSegmentFactory(session=session, room=room, speaker_user=student.user, text=f"line {i}")

    session = factories.LiveSessionFactory(course=course, professor=professor, status="live")
    grow(session, 2, 1)
    with django_assert_max_num_queries(4):
        small = selectors.monitor_page(session=session)
    grow(session, 48, 3)
    with django_assert_max_num_queries(4):
        big = selectors.monitor_page(session=session)
    assert len(small["rooms"]) == 2 and len(big["rooms"]) == 50
    assert all(len(room["lines"]) == 5 and len(room["students"]) == 5 for room in big["rooms"])
