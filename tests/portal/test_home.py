"""The home page per role, and its query count."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests import factories

pytestmark = pytest.mark.django_db

HOME = "/"


def test_anonymous_visitor_is_sent_to_login(client):
    response = client.get(HOME)

    assert response.status_code == 302
    assert response.url == f"{reverse('login')}?next=/"


def test_professor_sees_their_courses_with_numbers(
    client, logged_in, professor, populated_course, student, outsider
):
    logged_in(professor.user)

    response = client.get(HOME)

    assert response.status_code == 200
    courses = response.context["courses"]
    assert [c.code for c in courses] == ["CS101"]
    cs101 = courses[0]
    assert (cs101.student_count, cs101.document_count, cs101.session_count) == (1, 2, 2)
    assert cs101.live_session_count == 1
    html = response.content.decode()
    assert reverse("course-detail", args=[populated_course.pk]) in html
    assert "Kick-off" in html  # the most recent session
    assert "Demo University" in html  # the tenant, in the nav
    assert "Professor" in html  # the role badge
    assert "Open the admin" not in html


def test_professor_does_not_see_colleagues_courses(client, logged_in, professor, tenant):
    colleague = factories.ProfessorFactory(user__tenant=tenant)
    factories.CourseFactory(tenant=tenant, code="MATH1", professors=[colleague])
    logged_in(professor.user)

    assert [c.code for c in client.get(HOME).context["courses"]] == []


def test_student_sees_enrolled_courses_only(client, logged_in, student, course, tenant):
    factories.CourseFactory(tenant=tenant, code="BIO1")
    dropped = factories.CourseFactory(tenant=tenant, code="ART1")
    factories.EnrollmentFactory(course=dropped, student=student, status="dropped")
    logged_in(student.user)

    response = client.get(HOME)

    assert [c.code for c in response.context["courses"]] == ["CS101"]
    html = response.content.decode()
    assert course.title in html
    assert "Students</th>" not in html  # no roster numbers table for students
    assert "Open the admin" not in html


def test_staff_sees_all_tenant_courses_and_the_admin_link(
    client, logged_in, staff_user, course, tenant, outsider
):
    factories.CourseFactory(tenant=tenant, code="BIO1")
    logged_in(staff_user)

    response = client.get(HOME)

    assert [c.code for c in response.context["courses"]] == ["BIO1", "CS101"]
    assert reverse("admin:index") in response.content.decode()


def test_superuser_without_tenant_sees_every_course(client, logged_in, superuser, course, outsider):
    logged_in(superuser)

    response = client.get(HOME)

    assert len(response.context["courses"]) == 2
    html = response.content.decode()
    assert "Other College" in html and "Demo University" in html
    assert "Superuser" in html
    assert reverse("admin:index") in html


def test_logout_button_is_a_post_form(client, logged_in, professor):
    logged_in(professor.user)

    html = client.get(HOME).content.decode()

    assert f'<form method="post" action="{reverse("logout")}"' in html


def _add_courses(tenant, professor, count):
    for _ in range(count):
        course = factories.CourseFactory(tenant=tenant, professors=[professor])
        factories.EnrollmentFactory.create_batch(2, course=course)
        factories.CourseDocumentFactory(course=course)
        factories.LiveSessionFactory(course=course, professor=professor)


@pytest.mark.parametrize("persona", ["professor", "staff_user", "student"])
def test_home_query_count_does_not_grow_with_courses(
    client, logged_in, request, tenant, professor, persona, django_assert_max_num_queries
):
    user = request.getfixturevalue(persona)
    user = getattr(user, "user", user)
    student = getattr(user, "student", None)

    def add(count):
        _add_courses(tenant, professor, count)
        if student:
            for course in tenant.courses.exclude(enrollments__student=student):
                factories.EnrollmentFactory(course=course, student=student)

    add(2)
    logged_in(user)
    with CaptureQueriesContext(connection) as two:
        assert len(client.get(HOME).context["courses"]) >= 2
    add(18)

    with django_assert_max_num_queries(len(two.captured_queries)):
        assert len(client.get(HOME).context["courses"]) >= 20


def test_student_count_is_the_whole_class_for_a_student_too(tenant, course, student):
    """A student's own enrollment filter must not narrow the count to 1 (filter-before-annotate)."""
    from courses.selectors import course_list_for_user

    factories.EnrollmentFactory.create_batch(3, course=course)
    factories.EnrollmentFactory(course=course, status="dropped")

    (seen,) = course_list_for_user(user=student.user)

    assert seen.student_count == 4
