"""Live-session portal pages through the Django test client: the builder, the session page
(moves, room edits, start, end), the monitor with its steering forms, and a room's page."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from sessions import live, orchestration
from sessions.models import BreakoutRoom, LiveSession, RoomAssignment, TranscriptSegment
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _instant_offline_tutor(settings, db):
    """The offline tutor answers at once (no API key, no network)."""
    settings.ROOM_TUTOR_DEBOUNCE_MS = 0
    factories.LLMModelFactory(
        tenant=None, position=1, provider="offline", model_name="offline-socratic",
        base_url_setting="", api_key_setting="",
    )


@pytest.fixture
def students(course):
    return [
        factories.EnrollmentFactory(course=course, student__user__username=f"s{i}", student__user__first_name=f"Stu{i}").student
        for i in range(4)
    ]


@pytest.fixture
def draft(course, professor, students):
    return orchestration.session_create(
        course=course, professor=professor, title="Loops lab", room_count=2, topics=["for loops", "while loops"]
    )


@pytest.fixture
def started(draft, professor):
    orchestration.session_start(session=draft, by=professor.user)
    draft.refresh_from_db()
    return draft


def _rooms(session) -> list[BreakoutRoom]:
    return list(session.rooms.order_by("number"))


def _room_of(student, session) -> BreakoutRoom:
    return RoomAssignment.objects.get(session=session, student=student).room


# --- Builder ---------------------------------------------------------------------------------


def test_professor_creates_a_session_with_topics_and_lands_on_its_page(client, logged_in, professor, course, students):
    logged_in(professor.user)
    url = reverse("session-new", args=[course.pk])

    assert client.get(url).status_code == 200
    response = client.post(
        url,
        {
            "title": "Recursion workshop", "teaching_mode": "socratic", "sizing": "rooms", "room_count": "2",
            "assignment_strategy": "round_robin", "topics": "base case\nrecursive step\n\n",
        },
    )

    session = LiveSession.objects.get(title="Recursion workshop")
    assert response.status_code == 302
    assert response.url == reverse("session-detail", args=[session.pk])
    assert [r.topic for r in _rooms(session)] == ["base case", "recursive step"]
    assert session.assignments.count() == 4
    page = client.get(response.url).content.decode()
    assert "base case" in page and "Start the session" in page


def test_students_per_room_sizes_the_session(client, logged_in, professor, course, students):
    logged_in(professor.user)

    client.post(
        reverse("session-new", args=[course.pk]),
        {"title": "Pairs", "teaching_mode": "qa", "sizing": "per_room", "students_per_room": "2", "assignment_strategy": "random"},
    )

    session = LiveSession.objects.get(title="Pairs")
    assert session.rooms.count() == 2
    assert session.teaching_mode == "qa"


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"title": ""}, "title", "This field is required."),
        ({"room_count": "0"}, "room_count", "greater than or equal to 1"),
        ({"room_count": "500"}, "room_count", "less than or equal to 100"),
        ({"room_count": ""}, "room_count", "How many rooms?"),
        ({"sizing": "per_room", "students_per_room": ""}, "students_per_room", "How many students in each room?"),
        ({"teaching_mode": "karaoke"}, "teaching_mode", "Select a valid choice"),
        ({"persona": "999999"}, "persona", "Select a valid choice"),
    ],
)
def test_builder_shows_form_errors_inline(client, logged_in, professor, course, changes, field, message):
    logged_in(professor.user)
    data = {"title": "Lab", "teaching_mode": "socratic", "sizing": "rooms", "room_count": "2", "assignment_strategy": "manual"}

    response = client.post(reverse("session-new", args=[course.pk]), {**data, **changes})

    assert response.status_code == 400
    assert any(message in error for error in response.context["form"].errors[field])
    assert 'aria-invalid="true"' in response.content.decode()
    assert not LiveSession.objects.exists()


def test_another_tenants_persona_is_not_offered(client, logged_in, professor, course, other_tenant):
    factories.AvatarPersonaFactory(tenant=other_tenant, name="Foreign tutor")
    mine = factories.AvatarPersonaFactory(tenant=None, name="Professor Ada")
    logged_in(professor.user)

    response = client.get(reverse("session-new", args=[course.pk]))

    html = response.content.decode()
    assert "Professor Ada" in html and "Foreign tutor" not in html
    assert mine in response.context["form"].fields["persona"].queryset


def test_a_student_cannot_open_the_builder(client, logged_in, student, course):
    logged_in(student.user)

    assert client.get(reverse("session-new", args=[course.pk])).status_code == 403


def test_course_page_lists_sessions_with_links_and_a_new_session_button(client, logged_in, professor, started, course):
    logged_in(professor.user)

    html = client.get(reverse("course-detail", args=[course.pk])).content.decode()

    assert reverse("session-new", args=[course.pk]) in html
    assert reverse("session-detail", args=[started.pk]) in html
    assert reverse("session-monitor", args=[started.pk]) in html


# --- Session page ---------------------------------------------------------------------------


def test_session_page_shows_rooms_students_and_a_start_button(client, logged_in, professor, draft, students):
    logged_in(professor.user)

    response = client.get(reverse("session-detail", args=[draft.pk]))

    html = response.content.decode()
    assert response.status_code == 200
    assert "Room 1" in html and "Room 2" in html and "for loops" in html
    for s in students:
        assert s.user.display_name in html
    assert reverse("session-start", args=[draft.pk]) in html


def test_moving_a_student_to_another_room(client, logged_in, professor, draft, students):
    logged_in(professor.user)
    first, second = _rooms(draft)
    student = RoomAssignment.objects.filter(room=first).first().student

    response = client.post(reverse("session-move", args=[draft.pk]), {"student_id": student.pk, "room_id": second.pk})

    assert response.status_code == 302
    assert _room_of(student, draft) == second


def test_moving_to_a_room_of_another_session_is_refused_clearly(client, logged_in, professor, draft, course, students):
    logged_in(professor.user)
    other = orchestration.session_create(course=course, professor=professor, title="Other", room_count=1)
    student = students[0]
    before = _room_of(student, draft)

    response = client.post(
        reverse("session-move", args=[draft.pk]), {"student_id": student.pk, "room_id": other.rooms.get().pk}, follow=True
    )

    assert response.status_code == 200
    assert "That room is not part of this session." in response.content.decode()
    assert _room_of(student, draft) == before


def test_bad_move_input_is_an_error_message_not_a_500(client, logged_in, professor, draft):
    logged_in(professor.user)

    response = client.post(reverse("session-move", args=[draft.pk]), {"student_id": "abc", "room_id": "x"}, follow=True)

    assert response.status_code == 200
    assert "A student" in response.content.decode()


def test_editing_a_room_topic_and_goal(client, logged_in, professor, draft):
    logged_in(professor.user)
    room = _rooms(draft)[0]

    response = client.post(
        reverse("session-room-edit", args=[draft.pk, room.pk]),
        {"name": "Loopers", "topic": "nested loops", "goal": "Write a multiplication table", "teaching_mode": "quiz_lock"},
    )

    room.refresh_from_db()
    assert response.status_code == 302 and response.url.endswith(f"#room-{room.pk}")
    assert (room.name, room.topic, room.goal, room.teaching_mode) == ("Loopers", "nested loops", "Write a multiplication table", "quiz_lock")


def test_room_edit_errors_are_messages(client, logged_in, professor, draft):
    logged_in(professor.user)
    room = _rooms(draft)[0]

    response = client.post(reverse("session-room-edit", args=[draft.pk, room.pk]), {"name": "  "}, follow=True)

    assert "A room needs a name." in response.content.decode()


def test_start_redirects_to_the_monitor_with_the_counts(client, logged_in, professor, draft):
    logged_in(professor.user)

    response = client.post(reverse("session-start", args=[draft.pk]), follow=True)

    draft.refresh_from_db()
    assert draft.status == "live"
    assert response.redirect_chain[-1][0] == reverse("session-monitor", args=[draft.pk])
    assert "The session is live: 2 rooms, 4 students, 2 tutors ready." in response.content.decode()


def test_a_degraded_start_shows_each_failed_tutor_with_its_reason(client, logged_in, professor, draft, settings):
    settings.ROOM_TUTOR_STARTER = "tests.portal.test_session_pages.failing_tutor_start"
    logged_in(professor.user)

    response = client.post(reverse("session-start", args=[draft.pk]), follow=True)

    html = response.content.decode()
    assert "2 tutor(s) failed to start" in html
    assert "Room 1 tutor</strong>: The avatar service is down" in html
    assert 'id="degraded-banner"' in html
    detail = client.get(reverse("session-detail", args=[draft.pk])).content.decode()
    assert "Started with problems." in detail and "The avatar service is down" in detail


def failing_tutor_start(spec):
    raise RuntimeError("The avatar service is down")


def test_starting_without_students_is_a_clear_message(client, logged_in, professor, course):
    session = orchestration.session_create(course=course, professor=professor, title="Empty", room_count=1)
    logged_in(professor.user)

    response = client.post(reverse("session-start", args=[session.pk]), follow=True)

    assert "No student is enrolled in the course" in response.content.decode()
    session.refresh_from_db()
    assert session.status == "draft"


def test_end_then_the_page_offers_the_exports(client, logged_in, professor, started):
    logged_in(professor.user)

    response = client.post(reverse("session-end", args=[started.pk]), follow=True)

    started.refresh_from_db()
    html = response.content.decode()
    assert started.status == "ended"
    assert f"/sessions/{started.pk}/transcript.vtt" in html
    assert "Start the session" not in html
    vtt = client.get(f"/sessions/{started.pk}/transcript.vtt")
    assert vtt.status_code == 200 and vtt.content.startswith(b"WEBVTT")


# --- Access -------------------------------------------------------------------------------------


def test_another_tenants_session_and_room_are_404(client, logged_in, outsider, started):
    logged_in(outsider.user)
    room = _rooms(started)[0]

    for url in (
        reverse("session-detail", args=[started.pk]),
        reverse("session-monitor", args=[started.pk]),
        reverse("room-detail", args=[room.pk]),
    ):
        assert client.get(url).status_code == 404, url
    assert client.post(reverse("session-end", args=[started.pk])).status_code == 404
    started.refresh_from_db()
    assert started.status == "live"


def test_a_student_gets_403_on_the_monitor_and_the_session_page(client, logged_in, started, students):
    logged_in(students[0].user)

    assert client.get(reverse("session-monitor", args=[started.pk])).status_code == 403
    assert client.get(reverse("session-detail", args=[started.pk])).status_code == 403
    assert client.post(reverse("session-broadcast", args=[started.pk]), {"text": "hi"}).status_code == 403


def test_a_student_of_another_room_gets_403_on_a_room(client, logged_in, started, students):
    student = students[0]
    mine = _room_of(student, started)
    other = next(r for r in _rooms(started) if r != mine)
    logged_in(student.user)

    assert client.get(reverse("room-detail", args=[mine.pk])).status_code == 200
    assert client.get(reverse("room-detail", args=[other.pk])).status_code == 403


def test_anonymous_visitors_are_sent_to_login(client, started):
    response = client.get(reverse("session-monitor", args=[started.pk]))

    assert response.status_code == 302 and response.url.startswith(reverse("login"))


# --- Monitor -------------------------------------------------------------------------------------


def test_monitor_renders_rooms_lines_alerts_and_the_socket_config(client, logged_in, professor, started, students):
    first, second = _rooms(started)
    student = RoomAssignment.objects.filter(room=first).first().student
    live.room_line_post(room=first, user=student.user, text="Why does range(3) stop at 2?")
    live.room_broadcast(session=started, by=professor.user, text="Five minutes left", room_id="all")
    BreakoutRoom.objects.filter(pk=second.pk).update(tutor_status="failed", tutor_error="No model")
    started.refresh_from_db()
    logged_in(professor.user)

    response = client.get(reverse("session-monitor", args=[started.pk]))

    html = response.content.decode()
    assert response.status_code == 200
    assert "Why does range(3) stop at 2?" in html
    assert html.count("From the professor") == 2
    assert f'data-last-seq="{started.last_seq}"' in html
    assert f'"ws_path": "/ws/sessions/{started.pk}/monitor/"' in html
    rooms = {r["id"]: r for r in response.context["rooms"]}
    assert rooms[second.pk]["alerts"] == 1 and rooms[first.pk]["alerts"] == 0
    assert "No model" in html


def test_monitor_lines_after_the_snapshot_seq_are_left_to_the_replay(client, logged_in, professor, started, monkeypatch):
    """A line persisted between reading the session and its lines is not rendered twice."""
    room = _rooms(started)[0]
    logged_in(professor.user)
    from sessions import selectors

    real = selectors.monitor_page

    def with_a_late_line(*, session):
        student = RoomAssignment.objects.filter(room=room).first().student
        live.room_line_post(room=room, user=student.user, text="late line")
        return real(session=session)

    monkeypatch.setattr(selectors, "monitor_page", with_a_late_line)

    html = client.get(reverse("session-monitor", args=[started.pk])).content.decode()

    assert "late line" not in html


def _big_session(course, professor, rooms: int, per_room: int = 5):
    factories.EnrollmentFactory.create_batch(rooms * per_room, course=course)
    session = orchestration.session_create(course=course, professor=professor, title=f"{rooms} rooms", room_count=rooms)
    orchestration.session_start(session=session, by=professor.user)
    for room in session.rooms.all():
        assignment = room.assignments.select_related("student__user").first()
        live.room_line_post(room=room, user=assignment.student.user, text=f"Hello from {room.name}")
    live.room_broadcast(session=session, by=professor.user, text="Welcome", room_id="all")
    return session


def test_monitor_query_count_is_the_same_for_2_and_50_rooms(
    client, logged_in, tenant, professor, course, django_assert_max_num_queries
):
    from courses.models import Course

    other_course = factories.CourseFactory(tenant=tenant, code="CS102", professors=[professor])
    small = _big_session(course, professor, rooms=2)
    big = _big_session(Course.objects.get(pk=other_course.pk), professor, rooms=50)
    logged_in(professor.user)

    with CaptureQueriesContext(connection) as two:
        response = client.get(reverse("session-monitor", args=[small.pk]))
    assert response.status_code == 200 and len(response.context["rooms"]) == 2

    with django_assert_max_num_queries(len(two.captured_queries)):
        response = client.get(reverse("session-monitor", args=[big.pk]))
    assert len(response.context["rooms"]) == 50
    assert sum(len(r["students"]) for r in response.context["rooms"]) == 250
    assert all(len(r["lines"]) == 2 for r in response.context["rooms"])


def test_steering_forms_work_without_javascript(client, logged_in, professor, started):
    logged_in(professor.user)
    first = _rooms(started)[0]

    client.post(reverse("session-broadcast", args=[started.pk]), {"text": "Wrap up", "room_id": str(first.pk)})
    client.post(reverse("session-mode", args=[started.pk]), {"mode": "quiz_lock", "room_id": "all"})
    response = client.post(reverse("session-hint", args=[started.pk]), {"text": "Mention off-by-one"}, follow=True)

    started.refresh_from_db()
    assert TranscriptSegment.objects.filter(session=started, room=first, speaker_kind="professor", text="Wrap up").count() == 1
    assert started.teaching_mode == "quiz_lock"
    assert started.tutor_hint == "Mention off-by-one"
    assert "Hint pushed to every tutor." in response.content.decode()

    client.post(reverse("session-hint", args=[started.pk]), {"text": "x", "clear": "1"})
    started.refresh_from_db()
    assert started.tutor_hint == ""


def test_steering_errors_are_messages(client, logged_in, professor, started):
    logged_in(professor.user)

    empty = client.post(reverse("session-broadcast", args=[started.pk]), {"text": "  "}, follow=True)
    mode = client.post(reverse("session-mode", args=[started.pk]), {"mode": "karaoke"}, follow=True)

    assert "Write something to broadcast." in empty.content.decode()
    assert "Choose a teaching mode" in mode.content.decode()


# --- Room page -------------------------------------------------------------------------------------


def test_room_page_renders_the_transcript_with_names_markdown_and_the_composer(client, logged_in, professor, started):
    room = _rooms(started)[0]
    student = RoomAssignment.objects.filter(room=room).select_related("student__user").first().student
    live.room_line_post(room=room, user=student.user, text="<b>is this bold?</b>")
    live.room_broadcast(session=started, by=professor.user, text="Five minutes left", room_id=room.pk)
    logged_in(student.user)

    response = client.get(reverse("room-detail", args=[room.pk]))

    html = response.content.decode()
    assert response.status_code == 200
    assert "&lt;b&gt;is this bold?&lt;/b&gt;" in html
    assert student.user.display_name in html
    assert "From the professor" in html and "Five minutes left" in html
    assert 'id="room-composer"' in html and 'aria-live="polite"' in html
    assert f'"ws_path": "/ws/rooms/{room.pk}/"' in html
    assert "for loops" in html


def test_the_professor_reads_a_room_without_a_composer(client, logged_in, professor, started):
    room = _rooms(started)[0]
    logged_in(professor.user)

    html = client.get(reverse("room-detail", args=[room.pk])).content.decode()

    assert 'id="room-composer"' not in html
    assert "You are reading along" in html
    assert f"/rooms/{room.pk}/transcript.csv" in html


def test_an_ended_session_room_says_so(client, logged_in, professor, started, students):
    orchestration.session_end(session=started, by=professor.user)
    room = _room_of(students[0], started)
    logged_in(students[0].user)

    html = client.get(reverse("room-detail", args=[room.pk])).content.decode()

    assert "The session has ended." in html
    assert 'id="room-state-ended" class="chat-notice room-ended" role="status">' in html


# --- Home ----------------------------------------------------------------------------------------


def test_home_invites_a_student_into_their_live_room(client, logged_in, started, students):
    student = students[0]
    room = _room_of(student, started)
    logged_in(student.user)

    html = client.get("/").content.decode()

    assert "Loops lab" in html
    assert reverse("room-detail", args=[room.pk]) in html
    assert f"Join {room.name}" in html


def test_home_offers_the_professor_the_monitor_of_a_live_session(client, logged_in, professor, started):
    logged_in(professor.user)

    html = client.get("/").content.decode()

    assert reverse("session-monitor", args=[started.pk]) in html
