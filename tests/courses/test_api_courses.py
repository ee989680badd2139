"""`GET /api/v1/courses/` and `/courses/<id>/`: tenant and role scoping, shape, query count."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from courses.models import Course, Enrollment
from tests import factories

pytestmark = pytest.mark.usefixtures("fast_password_hashing")

LIST_URL = "/api/v1/courses/"


def detail_url(course_id) -> str:
    return f"/api/v1/courses/{course_id}/"


def codes(response) -> list[str]:
    assert response.status_code == 200, response.content[:500]
    return [c["code"] for c in response.json()["results"]]


@pytest.fixture
def colleague_course(tenant):
    """A course of our tenant taught by another professor, with no students."""
    other_prof = factories.ProfessorFactory(user__tenant=tenant, user__username="colleague")
    return factories.CourseFactory(tenant=tenant, code="MATH200", professors=[other_prof])


def test_urls_are_the_contracts(course):
    assert reverse("api:course-list") == LIST_URL
    assert reverse("api:course-detail", args=[course.id]) == detail_url(course.id)


def test_list_item_shape(client, course, professor, student, api_headers):
    course.description = "Variables, loops, functions."
    course.save()
    factories.EnrollmentFactory(course=course, status=Enrollment.Status.DROPPED)

    body = client.get(LIST_URL, **api_headers(professor.user)).json()

    assert (body["count"], body["next"], body["previous"]) == (1, None, None)
    assert body["results"] == [
        {
            "id": course.id,
            "code": "CS101",
            "title": course.title,
            "description": "Variables, loops, functions.",
            "professors": [{"id": professor.id, "name": str(professor)}],
            "student_count": 1,  # the dropped student does not count
            "default_teaching_mode": "socratic",
            "is_active": True,
        }
    ]
    assert body["results"][0]["professors"][0]["name"].startswith("Dr. ")


def test_professor_sees_the_courses_they_teach_only(client, professor, course, colleague_course, api_headers):
    assert codes(client.get(LIST_URL, **api_headers(professor.user))) == ["CS101"]


def test_student_sees_active_enrollments_only(client, student, course, colleague_course, tenant, api_headers):
    dropped = factories.CourseFactory(tenant=tenant, code="BIO100")
    factories.EnrollmentFactory(course=dropped, student=student, status=Enrollment.Status.DROPPED)

    assert codes(client.get(LIST_URL, **api_headers(student.user))) == ["CS101"]


def test_staff_sees_every_course_of_their_tenant(
    client, staff_user, course, colleague_course, outsider, api_headers
):
    assert codes(client.get(LIST_URL, **api_headers(staff_user))) == ["CS101", "MATH200"]


def test_outsider_never_sees_our_courses(client, outsider, course, colleague_course, api_headers):
    # The outsider's tenant has a CS101 too: theirs is listed, ours is not.
    body = client.get(LIST_URL, **api_headers(outsider.user)).json()

    assert [c["id"] for c in body["results"]] == [outsider.courses.get().id]
    assert course.id not in [c["id"] for c in body["results"]]


def test_staff_of_another_tenant_sees_none_of_ours(client, other_tenant, course, api_headers):
    other_staff = factories.StaffUserFactory(tenant=other_tenant, username="otherstaff")

    assert codes(client.get(LIST_URL, **api_headers(other_staff))) == []


def test_detail_of_a_visible_course(client, student, course, api_headers):
    response = client.get(detail_url(course.id), **api_headers(student.user))

    assert response.status_code == 200
    assert response.json()["code"] == "CS101"
    assert response.json()["student_count"] == 1


@pytest.mark.parametrize("who", ["outsider", "student_elsewhere", "colleague"])
def test_detail_of_a_course_not_yours_is_404_in_shape(
    client, who, course, outsider, tenant, api_headers, assert_api_error
):
    user = {
        "outsider": lambda: outsider.user,
        "student_elsewhere": lambda: factories.StudentFactory(user__tenant=tenant).user,
        "colleague": lambda: factories.ProfessorFactory(user__tenant=tenant).user,
    }[who]()

    response = client.get(detail_url(course.id), **api_headers(user))

    error = assert_api_error(response, 404, "not_found")
    assert "CS101" not in error["message"]


def test_another_tenants_course_looks_exactly_like_a_missing_one(
    client, outsider, course, api_headers, assert_api_error
):
    headers = api_headers(outsider.user)
    theirs = client.get(detail_url(course.id), **headers)
    missing = client.get(detail_url(10**9), **headers)

    assert assert_api_error(theirs, 404) == assert_api_error(missing, 404)


def test_huge_course_id_is_404_not_500(client, professor, api_headers, assert_api_error):
    client.raise_request_exception = False
    assert_api_error(client.get(detail_url(10**30), **api_headers(professor.user)), 404, "not_found")


def test_pagination(client, staff_user, tenant, api_headers):
    for i in range(5):
        factories.CourseFactory(tenant=tenant, code=f"C{i}")
    headers = api_headers(staff_user)

    first = client.get(LIST_URL, {"page_size": 2}, **headers).json()
    assert first["count"] == 5
    assert [c["code"] for c in first["results"]] == ["C0", "C1"]
    assert first["previous"] is None
    last = client.get(first["next"].replace("http://testserver", ""), **headers).json()
    assert [c["code"] for c in last["results"]] == ["C2", "C3"]


@pytest.mark.parametrize("page", ["0", "99", "abc", "-1", "1.5", "\x00"])
def test_invalid_page_is_404_in_shape(client, staff_user, course, page, api_headers, assert_api_error):
    client.raise_request_exception = False
    assert_api_error(client.get(LIST_URL, {"page": page}, **api_headers(staff_user)), 404, "not_found")


@pytest.mark.parametrize("page_size", ["abc", "-5", "0", "100000"])
def test_odd_page_size_falls_back_to_a_valid_one(client, staff_user, course, page_size, api_headers):
    response = client.get(LIST_URL, {"page_size": page_size}, **api_headers(staff_user))

    assert response.status_code == 200
    assert response.json()["count"] == 1


def _list_queries(client, user, api_headers) -> int:
    headers = api_headers(user)
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(LIST_URL, {"page_size": 100}, **headers)
    assert response.status_code == 200
    return len(ctx.captured_queries)


@pytest.mark.parametrize("role", ["staff", "professor", "student"])
def test_list_query_count_does_not_grow_with_courses(
    client, tenant, professor, staff_user, student, role, api_headers, django_assert_max_num_queries
):
    user = {"staff": staff_user, "professor": professor.user, "student": student.user}[role]

    def add_courses(n: int) -> None:
        for _ in range(n):
            course = factories.CourseFactory(
                tenant=tenant,
                code=f"Q{Course.objects.count():03d}",  # the factory's sequence may hit CS101
                professors=[professor, factories.ProfessorFactory(user__tenant=tenant)],
            )
            factories.EnrollmentFactory(course=course, student=student)
            factories.EnrollmentFactory(course=course)

    add_courses(1)
    with django_assert_max_num_queries(4):  # user, count, page, professors
        few = _list_queries(client, user, api_headers)
    add_courses(29)
    many = _list_queries(client, user, api_headers)

    assert Course.objects.count() >= 30
    assert few == many, (few, many)


def test_detail_query_count_does_not_grow_with_professors(
    client, course, tenant, professor, api_headers, django_assert_max_num_queries
):
    for _ in range(10):
        course.professors.add(factories.ProfessorFactory(user__tenant=tenant))
    with django_assert_max_num_queries(3):  # user, course, professors
        response = client.get(detail_url(course.id), **api_headers(professor.user))
    assert len(response.json()["professors"]) == 11


def test_list_is_read_only(client, professor, api_headers, assert_api_error):
    response = client.post(
        LIST_URL, {"code": "X"}, content_type="application/json", **api_headers(professor.user)
    )

    assert_api_error(response, 405, "method_not_allowed")


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/nope/",
        "/api/v1/courses/abc/",
        "/api/v1/courses/1/unknown/",
        "/api/v1/me",  # no trailing slash
        "/api/v1/%00/",
    ],
)
@pytest.mark.parametrize("method", ["get", "post", "delete"])
def test_unknown_api_urls_are_404_in_shape(client, db, path, method, assert_api_error):
    client.raise_request_exception = False
    assert_api_error(getattr(client, method)(path), 404, "not_found")
