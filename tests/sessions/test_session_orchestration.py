"""Building, starting, steering and ending a live session (sessions/orchestration.py)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from analytics.models import SessionAnalytics, StudentProgress
from courses.exceptions import Conflict, DomainError
from sessions import live, orchestration
from sessions.models import BreakoutRoom, Conversation, LiveSession, RoomAssignment, TranscriptSegment
from tests import factories

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_passwords")]


def _enrol(course, n: int, prefix: str = "s") -> list:
    return [
        factories.EnrollmentFactory(course=course, student__user__username=f"{prefix}{i:02d}").student
        for i in range(n)
    ]


def _failing_room_two(spec):
    """A tutor starter that fails for the room named "Room 2" (a soft failure)."""
    if spec.room_name == "Room 2":
        raise RuntimeError("avatar service timed out")


@pytest.fixture
def offline_chain(db):
    return factories.LLMModelFactory(
        tenant=None, position=1, provider="offline", model_name="offline-socratic",
        base_url_setting="", api_key_setting="",
    )


def test_create_places_students_round_robin_with_topics(course, professor):
    students = _enrol(course, 7)
    session = orchestration.session_create(
        course=course, professor=professor, title="Loops lab", room_count=3,
        topics=["for loops", "while loops"],
    )
    rooms = list(session.rooms.order_by("number"))
    assert [(r.name, r.topic) for r in rooms] == [("Room 1", "for loops"), ("Room 2", "while loops"), ("Room 3", "")]
    sizes = Counter(RoomAssignment.objects.filter(session=session).values_list("room__number", flat=True))
    assert sizes == {1: 3, 2: 2, 3: 2}
    # Round robin in name order: the first three students go to rooms 1, 2, 3.
    in_name_order = orchestration._active_students(course.pk)
    assert sorted(s.pk for s in in_name_order) == sorted(s.pk for s in students)
    first = [RoomAssignment.objects.get(student=s).room.number for s in in_name_order[:3]]
    assert first == [1, 2, 3]
    assert session.status == "draft"


def test_students_per_room_sizes_the_session_and_manual_places_nobody(course, professor):
    _enrol(course, 9)
    by_size = orchestration.session_create(course=course, professor=professor, title="A", students_per_room=4)
    assert by_size.rooms.count() == 3
    manual = orchestration.session_create(
        course=course, professor=professor, title="B", room_count=2, assignment_strategy="manual"
    )
    assert manual.rooms.count() == 2
    assert not RoomAssignment.objects.filter(session=manual).exists()


def test_random_assignment_is_a_shuffle_not_the_name_order(course, professor):
    _enrol(course, 12)
    a = orchestration.session_create(course=course, professor=professor, title="A", room_count=4, assignment_strategy="random", seed=1)
    b = orchestration.session_create(course=course, professor=professor, title="B", room_count=4, seed=1)
    placed_a = list(RoomAssignment.objects.filter(session=a).order_by("student__user__username").values_list("room__number", flat=True))
    placed_b = list(RoomAssignment.objects.filter(session=b).order_by("student__user__username").values_list("room__number", flat=True))
    assert sorted(Counter(placed_a).values()) == [3, 3, 3, 3]
    assert placed_a != placed_b


def test_start_with_a_failing_tutor_goes_live_and_records_the_failure(course, professor, settings, offline_chain):
    settings.ROOM_TUTOR_STARTER = "tests.sessions.test_session_orchestration._failing_room_two"
    _enrol(course, 6)
    session = orchestration.session_create(course=course, professor=professor, title="Lab", room_count=3)
    result = orchestration.session_start(session=session, by=professor.user)

    session.refresh_from_db()
    assert session.status == "live" and session.started_at is not None
    room_two = session.rooms.get(number=2)
    assert room_two.tutor_status == "failed" and "timed out" in room_two.tutor_error
    assert session.degraded == {"tutors": {str(room_two.pk): "avatar service timed out"}}
    assert set(session.rooms.exclude(pk=room_two.pk).values_list("tutor_status", flat=True)) == {"ready"}
    assert result.started_now
    assert result.counts == {
        "rooms": 3, "students": 6, "tutors_ready": 2, "tutors_failed": 1, "unassigned": 0, "placed_at_start": 0,
    }
    assert [len(r["students"]) for r in result.rooms] == [2, 2, 2]
    # Every room has the tutor's conversation (its memory), the failed one included.
    assert Conversation.objects.filter(room__session=session).count() == 3


def test_a_second_start_changes_nothing(course, professor, offline_chain):
    _enrol(course, 4)
    session = orchestration.session_create(course=course, professor=professor, title="Lab", room_count=2)
    first = orchestration.session_start(session=session)
    started_at = LiveSession.objects.get(pk=session.pk).started_at
    rows = (BreakoutRoom.objects.count(), RoomAssignment.objects.count(), Conversation.objects.count())

    again = orchestration.session_start(session=LiveSession.objects.get(pk=session.pk))
    assert not again.started_now
    assert again.rooms == first.rooms
    assert (BreakoutRoom.objects.count(), RoomAssignment.objects.count(), Conversation.objects.count()) == rows
    assert LiveSession.objects.get(pk=session.pk).started_at == started_at


def test_hard_failures_write_nothing(course, professor, offline_chain):
    session = orchestration.session_create(course=course, professor=professor, title="Empty", room_count=2)
    with pytest.raises(Conflict) as no_students:
        orchestration.session_start(session=session)
    assert no_students.value.code == "no_students"
    session.refresh_from_db()
    assert session.status == "draft" and not session.degraded
    assert not Conversation.objects.exists()

    _enrol(course, 2)
    professor.user.is_active = False
    professor.user.save()
    with pytest.raises(Conflict) as no_professor:
        orchestration.session_start(session=session)
    assert no_professor.value.code == "no_professor"
    assert LiveSession.objects.get(pk=session.pk).status == "draft"


def test_an_ended_session_cannot_start_again(course, professor, offline_chain):
    _enrol(course, 2)
    session = orchestration.session_create(course=course, professor=professor, title="Lab")
    orchestration.session_start(session=session)
    orchestration.session_end(session=session)
    with pytest.raises(Conflict) as ended:
        orchestration.session_start(session=session)
    assert ended.value.code == "session_ended"


def test_students_enrolled_after_building_are_placed_in_the_emptiest_rooms(course, professor, offline_chain):
    _enrol(course, 4)
    session = orchestration.session_create(course=course, professor=professor, title="Lab", room_count=2)
    first_room = session.rooms.get(number=1)
    late = _enrol(course, 3, prefix="late")
    RoomAssignment.objects.filter(session=session, room=first_room).delete()  # room 1 now empty
    result = orchestration.session_start(session=session)
    assert result.counts["placed_at_start"] == 5
    sizes = Counter(RoomAssignment.objects.filter(session=session).values_list("room__number", flat=True))
    assert sizes == {1: 4, 2: 3}
    assert RoomAssignment.objects.filter(student__in=late).count() == 3


def test_assigning_a_student_of_another_course_or_a_foreign_room_is_refused(course, professor, tenant):
    _enrol(course, 2)
    session = orchestration.session_create(course=course, professor=professor, title="Lab", room_count=2)
    other_course = factories.CourseFactory(tenant=tenant, code="MATH1")
    stranger = factories.EnrollmentFactory(course=other_course).student
    with pytest.raises(DomainError) as not_enrolled:
        orchestration.assignment_move(session=session, student=stranger, room=session.rooms.first(), by=None)
    assert not_enrolled.value.fields == {"student": ["That student is not enrolled in the session's course."]}
    other_session = orchestration.session_create(course=course, professor=professor, title="Other")
    mine = RoomAssignment.objects.filter(session=session).first().student
    with pytest.raises(DomainError) as foreign_room:
        orchestration.assignment_move(session=session, student=mine, room=other_session.rooms.first(), by=None)
    assert "room" in foreign_room.value.fields
    assert not RoomAssignment.objects.filter(student=stranger).exists()
    with pytest.raises(DomainError):
        orchestration.assignment_move_by_ids(session=session, student_id="7", room_id=None, by=None)


def test_end_closes_rooms_and_computes_analytics_once(course, professor, offline_chain, django_capture_on_commit_callbacks):
    students = _enrol(course, 2)
    session = orchestration.session_create(course=course, professor=professor, title="Lab")
    orchestration.session_start(session=session)
    room = session.rooms.get()
    live.room_line_post(room=room, user=students[0].user, text="Why does range(5) stop at 4?")
    live.room_line_post(room=room, user=students[0].user, text="I see, it starts at zero")

    with django_capture_on_commit_callbacks(execute=True):
        orchestration.session_end(session=session)
    session.refresh_from_db()
    assert session.status == "ended" and session.ended_at >= session.started_at
    assert set(session.rooms.values_list("status", "tutor_status")) == {("closed", "stopped")}
    analytics = SessionAnalytics.objects.get(session=session)
    assert analytics.participation["students"] == 2 and analytics.participation["silent"] == 1
    talker = StudentProgress.objects.get(session=session, student=students[0])
    # "Why does range(5) stop at 4?" is 7 words and a question; "I see, it starts at zero" 6.
    assert (talker.text_turns, talker.questions_asked, talker.words) == (2, 1, 13)

    orchestration.session_end(session=session)  # idempotent
    assert SessionAnalytics.objects.filter(session=session).count() == 1
    with pytest.raises(Conflict):
        live.room_line_post(room=room, user=students[0].user, text="hello?")


def test_idle_sessions_are_ended_by_the_beat_task(course, professor, offline_chain):
    from sessions.tasks import end_idle_sessions

    _enrol(course, 2)
    idle = orchestration.session_create(course=course, professor=professor, title="Idle")
    busy = orchestration.session_create(course=course, professor=professor, title="Busy")
    for session in (idle, busy):
        orchestration.session_start(session=session)
    LiveSession.objects.filter(pk=idle.pk).update(last_activity_at=timezone.now() - timedelta(hours=3))
    assert end_idle_sessions() == [idle.pk]
    idle.refresh_from_db()
    assert idle.status == "ended" and idle.degraded["ended_because"] == "idle"
    assert LiveSession.objects.get(pk=busy.pk).status == "live"


def test_the_idle_check_is_scheduled_once_and_editable():
    from django_celery_beat.models import PeriodicTask

    from sessions.tasks import beat_schedules_ensure

    beat_schedules_ensure()
    task = PeriodicTask.objects.get(name="End idle live sessions")
    task.enabled = False
    task.save()
    beat_schedules_ensure()
    assert PeriodicTask.objects.filter(task="sessions.end_idle_sessions").count() == 1
    assert not PeriodicTask.objects.get(name="End idle live sessions").enabled


def test_seq_is_one_sequence_across_rooms_and_broadcasts(course, professor, offline_chain):
    students = _enrol(course, 4)
    session = orchestration.session_create(course=course, professor=professor, title="Lab", room_count=2)
    orchestration.session_start(session=session)
    rooms = list(session.rooms.order_by("number"))
    by_room = {a.room_id: a.student for a in RoomAssignment.objects.filter(session=session).select_related("student__user")}
    live.room_line_post(room=rooms[0], user=by_room[rooms[0].pk].user, text="for loops?")
    live.room_broadcast(session=session, by=professor.user, text="Five minutes left")
    live.room_line_post(room=rooms[1], user=by_room[rooms[1].pk].user, text="while loops?")
    seqs = list(TranscriptSegment.objects.filter(session=session).order_by("seq").values_list("seq", "room__number", "speaker_kind"))
    assert seqs == [(1, 1, "student"), (2, 1, "professor"), (3, 2, "professor"), (4, 2, "student")]
    assert LiveSession.objects.get(pk=session.pk).last_seq == 4
    assert len(students) == 4


def test_the_start_summary_counts_students_left_out_of_every_room(course, professor, offline_chain):
    students = _enrol(course, 3)
    session = orchestration.session_create(course=course, professor=professor, title="Lab", room_count=1)
    orchestration.session_start(session=session)
    orchestration.assignment_move(session=session, student=students[0], room=None, by=professor.user)
    again = orchestration.session_start(session=LiveSession.objects.get(pk=session.pk))
    assert (again.counts["students"], again.counts["unassigned"]) == (2, 1)
