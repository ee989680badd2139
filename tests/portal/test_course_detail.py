"""The course page: who may see it, what each role sees, and its query count."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests import factories

pytestmark = pytest.mark.django_db


def url(course) -> str:
    return reverse("course-detail", args=[course.pk])


def test_professor_of_the_course_sees_roster_documents_and_sessions(
    client, logged_in, professor, populated_course, student
):
    logged_in(professor.user)

    response = client.get(url(populated_course))

    assert response.status_code == 200
    html = response.content.decode()
    assert populated_course.title in html
    assert 'id="students"' in html and student.user.username in html
    assert 'id="documents"' in html and "Week 1 slides" in html
    assert 'id="sessions"' in html and "Loops lab" in html and "Kick-off" in html
    assert str(professor) in html  # "Taught by Dr. ..."
    assert response.context["detail"].can_teach is True


def test_document_progress_bar_is_accessible(client, logged_in, professor, populated_course):
    logged_in(professor.user)

    html = client.get(url(populated_course)).content.decode()

    assert 'role="progressbar"' in html
    assert 'aria-valuenow="40"' in html and 'aria-valuemin="0"' in html and 'aria-valuemax="100"' in html
    assert 'aria-label="Ingestion of Week 2 notes"' in html
    assert "badge-processing" in html and "badge-ready" in html
    assert "12 pages" in html and "47.1\xa0KB" in html
    # A document is still being ingested: the section polls for updates.
    assert f'hx-get="{reverse("course-documents", args=[populated_course.pk])}"' in html


def test_enrolled_student_sees_the_course_but_no_roster_or_sessions(
    client, logged_in, populated_course, student
):
    other = factories.EnrollmentFactory(course=populated_course).student
    logged_in(student.user)

    response = client.get(url(populated_course))

    assert response.status_code == 200
    html = response.content.decode()
    assert populated_course.title in html
    assert "Week 1 slides" in html
    assert 'id="students"' not in html and other.user.username not in html
    assert 'id="sessions"' not in html and "Kick-off" not in html
    assert 'id="my-practice"' in html
    assert response.context["detail"].enrollments == []


def test_student_sees_their_own_room_and_practice_only(client, logged_in, populated_course, student):
    session = factories.LiveSessionFactory(course=populated_course, title="Recursion lab")
    room = factories.BreakoutRoomFactory(session=session, number=1, name="Room A", topic="Base cases")
    factories.RoomAssignmentFactory(room=room, student=student)
    factories.ConversationFactory(course=populated_course, student=student, title="Practising loops")
    stranger = factories.EnrollmentFactory(course=populated_course).student
    factories.ConversationFactory(course=populated_course, student=stranger, title="Someone else's chat")
    logged_in(student.user)

    html = client.get(url(populated_course)).content.decode()

    assert "Recursion lab" in html and "Base cases" in html
    assert "Practising loops" in html
    assert "Someone else&#x27;s chat" not in html and "Someone else's chat" not in html


def test_staff_of_the_tenant_sees_the_roster(client, logged_in, staff_user, course, student):
    logged_in(staff_user)

    html = client.get(url(course)).content.decode()

    assert 'id="students"' in html and student.user.username in html


def test_professor_of_another_tenant_gets_404(client, logged_in, outsider, course):
    logged_in(outsider.user)

    response = client.get(url(course))

    assert response.status_code == 404
    assert "Page not found" in response.content.decode()


def test_colleague_professor_of_same_tenant_gets_404(client, logged_in, tenant, course):
    colleague = factories.ProfessorFactory(user__tenant=tenant)
    logged_in(colleague.user)

    assert client.get(url(course)).status_code == 404


def test_student_not_enrolled_gets_404(client, logged_in, tenant, course):
    stranger = factories.StudentFactory(user__tenant=tenant)
    logged_in(stranger.user)

    assert client.get(url(course)).status_code == 404


def test_dropped_student_gets_404(client, logged_in, course, student):
    student.enrollments.update(status="dropped")
    logged_in(student.user)

    assert client.get(url(course)).status_code == 404


def test_documents_partial_uses_the_same_access_rule(
    client, logged_in, outsider, professor, populated_course
):
    partial = reverse("course-documents", args=[populated_course.pk])
    logged_in(outsider.user)
    assert client.get(partial).status_code == 404

    logged_in(professor.user)
    response = client.get(partial, headers={"HX-Request": "true"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "<section" in html and "<html" not in html


def test_anonymous_visitor_is_sent_to_login(client, course):
    response = client.get(url(course))

    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def _grow(course, professor, students, documents, sessions):
    factories.EnrollmentFactory.create_batch(students, course=course)
    factories.CourseDocumentFactory.create_batch(documents, course=course)
    for _ in range(sessions):
        session = factories.LiveSessionFactory(course=course, professor=professor)
        factories.BreakoutRoomFactory(session=session, number=1)


@pytest.mark.parametrize("persona", ["professor", "student"])
def test_course_page_query_count_does_not_grow(
    client, logged_in, request, course, professor, persona, django_assert_max_num_queries
):
    user = request.getfixturevalue(persona).user
    _grow(course, professor, students=2, documents=2, sessions=2)
    logged_in(user)
    with CaptureQueriesContext(connection) as small:
        assert client.get(url(course)).status_code == 200

    _grow(course, professor, students=28, documents=15, sessions=20)

    with django_assert_max_num_queries(len(small.captured_queries)):
        response = client.get(url(course))
    assert response.status_code == 200
    if persona == "professor":
        assert len(response.context["detail"].enrollments) == 30


@pytest.fixture
def notes(course, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return factories.CourseDocumentFactory(
        course=course, title="Notes", file=SimpleUploadedFile("notes.md", b"# Loops\n")
    )


def test_enrolled_student_downloads_a_document_through_the_access_check(client, logged_in, student, notes):
    logged_in(student.user)

    response = client.get(reverse("course-document-file", args=[notes.course_id, notes.pk]))

    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"# Loops\n"


def test_document_download_is_404_for_outsiders_and_other_courses(
    client, logged_in, outsider, professor, notes, tenant
):
    logged_in(outsider.user)
    assert client.get(reverse("course-document-file", args=[notes.course_id, notes.pk])).status_code == 404

    other_course = factories.CourseFactory(tenant=tenant, professors=[professor])
    logged_in(professor.user)
    assert client.get(reverse("course-document-file", args=[other_course.pk, notes.pk])).status_code == 404
