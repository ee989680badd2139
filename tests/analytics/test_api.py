"""Analytics API: the contract's shape, who sees what, pending state, constant query counts."""

from __future__ import annotations

import pytest

from analytics import services
from analytics.models import SessionAnalytics, StudentProgress
from tests import factories
from tests.analytics import scripted_session as script

pytestmark = pytest.mark.usefixtures("fast_password_hashing")


@pytest.fixture
def scripted(course, professor):
    session, students, rooms = script.build(course=course, professor=professor)
    services.session_analytics_compute(session_id=session.pk)
    return session, students, rooms


def url(session_id, suffix=""):
    return f"/api/v1/sessions/{session_id}/analytics/{suffix}"


def test_contract_shape_and_numbers(client, api_headers, professor, scripted):
    session, students, rooms = scripted
    response = client.get(url(session.pk), **api_headers(professor.user))
    assert response.status_code == 200
    doc = response.json()
    assert {"session", "students", "summary"} <= set(doc)
    assert {"status", "progress", "version", "participation", "rooms", "confusion_topics"} <= set(doc)
    assert doc["session"] == session.pk and doc["status"] == "ready" and doc["version"] == services.VERSION
    by_id = {row["student"]: row for row in doc["students"]}
    assert set(by_id) == {s.pk for s in students.values()}
    for key, expected in script.EXPECTED.items():
        row = by_id[students[key].pk]
        assert {"student", "talk_time_ms", "turns", "questions", "topics", "confusion_points",
                "engagement_score"} <= set(row)
        assert row["talk_time_ms"] == expected["talk_time_ms"]
        assert row["turns"] == expected["speech_turns"] + expected["text_turns"]
        assert row["questions"] == expected["questions_asked"]
        assert row["topics"] == expected["topics_covered"]
        assert row["confusion_points"] == expected["confusion_points"]
        assert row["engagement_score"] == expected["engagement_score"]
        assert row["evidence"] == expected["evidence"]
    ben = by_id[students["ben"].pk]
    assert ben["transcript_links"]["7"] == f"/api/v1/rooms/{rooms['r1'].pk}/transcript/?after_seq=6"
    assert set(ben["transcript_links"]) == {"4", "7", "8", "10"}
    assert doc["summary"].startswith("Offline summary") and doc["summary_offline"] is True
    assert [r["name"] for r in doc["rooms"]] == ["Room 1", "Room 2"]


def test_transcript_link_leads_to_the_line(client, api_headers, professor, scripted):
    session, students, _ = scripted
    doc = client.get(url(session.pk), **api_headers(professor.user)).json()
    ben = next(r for r in doc["students"] if r["student"] == students["ben"].pk)
    page = client.get(ben["transcript_links"]["7"], **api_headers(professor.user)).json()
    assert page["results"][0]["seq"] == 7


def test_student_detail_has_the_evidence_lines(client, api_headers, professor, scripted):
    session, students, _ = scripted
    response = client.get(url(session.pk, f"students/{students['ben'].pk}/"), **api_headers(professor.user))
    assert response.status_code == 200
    doc = response.json()
    assert [line["seq"] for line in doc["lines"]] == [4, 7, 8, 10]
    assert doc["lines"][0]["text"] == "I don't get recursion at all. How does it stop?"
    assert doc["lines"][2]["speaker_kind"] == "tutor"


def test_student_sees_only_their_own_numbers(client, api_headers, scripted, assert_api_error):
    session, students, _ = scripted
    ben = students["ben"]
    doc = client.get(url(session.pk), **api_headers(ben.user)).json()
    assert [row["student"] for row in doc["students"]] == [ben.pk]
    assert "participation" not in doc and "rooms" not in doc and doc["summary"] == ""
    assert client.get(url(session.pk, f"students/{ben.pk}/"), **api_headers(ben.user)).status_code == 200
    other = client.get(url(session.pk, f"students/{students['ana'].pk}/"), **api_headers(ben.user))
    assert_api_error(other, 403, "forbidden")
    assert_api_error(client.post(url(session.pk, "recompute/"), **api_headers(ben.user)), 403, "forbidden")
    assert_api_error(client.get(url(session.pk, "export.csv"), **api_headers(ben.user)), 403, "forbidden")


def test_other_tenant_gets_404(client, api_headers, outsider, scripted, assert_api_error):
    session, students, _ = scripted
    for path in (url(session.pk), url(session.pk, f"students/{students['ana'].pk}/"), url(session.pk, "export.json")):
        assert_api_error(client.get(path, **api_headers(outsider.user)), 404, "not_found")
    assert_api_error(client.post(url(session.pk, "recompute/"), **api_headers(outsider.user)), 404)
    assert_api_error(
        client.get(f"/api/v1/students/{students['ana'].pk}/progress/", **api_headers(outsider.user)), 404
    )


def test_professor_of_another_course_is_refused(client, api_headers, tenant, scripted, assert_api_error):
    session, _, _ = scripted
    stranger = factories.ProfessorFactory(user__tenant=tenant, user__username="stranger")
    assert_api_error(client.get(url(session.pk), **api_headers(stranger.user)), 403, "forbidden")


def test_staff_and_course_coprofessor_see_everything(client, api_headers, staff_user, course, scripted):
    session, _students, _ = scripted
    colleague = factories.ProfessorFactory(user__tenant=course.tenant, user__username="colleague")
    course.professors.add(colleague)
    for user in (staff_user, colleague.user):
        doc = client.get(url(session.pk), **api_headers(user)).json()
        assert len(doc["students"]) == 4 and "participation" in doc


def test_unauthenticated_is_401(client, scripted, assert_api_error):
    session, _, _ = scripted
    assert_api_error(client.get(url(session.pk)), 401)


def test_not_computed_yet_is_pending_and_queued(client, api_headers, course, professor, django_capture_on_commit_callbacks):
    session, students, _ = script.build(course=course, professor=professor)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.get(url(session.pk), **api_headers(professor.user))
    assert response.status_code == 200
    doc = response.json()
    assert doc["status"] == "pending" and doc["students"] == [] and doc["summary"] == ""
    assert len(callbacks) == 1
    callbacks[0]()  # the worker runs the queued task (eager here)
    doc = client.get(url(session.pk), **api_headers(professor.user)).json()
    assert doc["status"] == "ready" and len(doc["students"]) == 4
    detail = client.get(url(session.pk, f"students/{students['ana'].pk}/"), **api_headers(professor.user))
    assert detail.status_code == 200


def test_a_broker_that_is_down_leaves_the_analytics_failed_not_pending_forever(
    client, api_headers, course, professor, django_capture_on_commit_callbacks, monkeypatch
):
    """Pending means queued: when the task cannot be queued, the page must not poll forever and
    the API must say so (a recompute can be asked again)."""
    from analytics import tasks

    def broker_down(*args, **kwargs):
        raise OSError("connection refused")

    monkeypatch.setattr(tasks.session_analytics_compute, "delay", broker_down)
    session, _, _ = script.build(course=course, professor=professor)
    with django_capture_on_commit_callbacks(execute=True):
        assert client.get(url(session.pk), **api_headers(professor.user)).json()["status"] == "pending"
    assert SessionAnalytics.objects.get(session=session).status == "failed"
    assert client.get(url(session.pk), **api_headers(professor.user)).json()["status"] == "failed"


def test_unknown_student_in_the_session_is_404(client, api_headers, professor, scripted, assert_api_error):
    session, _, _ = scripted
    assert_api_error(client.get(url(session.pk, "students/999999/"), **api_headers(professor.user)), 404)


def test_recompute_queues_and_answers_202(client, api_headers, professor, scripted, django_capture_on_commit_callbacks):
    session, _, _ = scripted
    StudentProgress.objects.filter(session=session).update(engagement_score=1)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url(session.pk, "recompute/"), **api_headers(professor.user))
    assert response.status_code == 202 and response.json()["status"] == "pending"
    analytics = SessionAnalytics.objects.get(session=session)
    assert analytics.status == "ready" and analytics.participation["final"] is True
    assert not StudentProgress.objects.filter(session=session, engagement_score=1).exists()


def test_student_progress_across_a_course(client, api_headers, course, professor, scripted, assert_api_error):
    _session, students, _ = scripted
    ana = students["ana"]
    path = f"/api/v1/students/{ana.pk}/progress/"
    for user in (ana.user, professor.user):
        doc = client.get(path + f"?course={course.pk}", **api_headers(user)).json()
        assert doc["student"] == ana.pk and len(doc["sessions"]) == 1
        assert doc["sessions"][0]["engagement_score"] == 46 and doc["sessions"][0]["topics"] == ["function"]
    other_course = factories.CourseFactory(tenant=course.tenant, code="CS999")
    assert client.get(path + f"?course={other_course.pk}", **api_headers(ana.user)).json()["sessions"] == []
    assert_api_error(client.get(path + "?course=abc", **api_headers(ana.user)), 400, "invalid")
    # str.isdigit() holds for these, int() refuses them: still a 400, never a 500
    for odd in ("%C2%B2", "%E2%91%A0"):  # "²", "①"
        assert_api_error(client.get(path + f"?course={odd}", **api_headers(ana.user)), 400, "invalid")
    assert_api_error(client.get(path, **api_headers(students["ben"].user)), 403, "forbidden")


def _session_with(course, professor, n):
    session = factories.LiveSessionFactory(course=course, tenant=course.tenant, professor=professor, status="ended")
    room = factories.BreakoutRoomFactory(session=session)
    for i in range(n):
        assignment = factories.RoomAssignmentFactory(room=room, session=session)
        factories.TranscriptSegmentFactory(
            session=session, room=room, seq=i + 1, speaker_user=assignment.student.user, text="What is a loop?"
        )
    services.session_analytics_compute(session_id=session.pk)
    return session


@pytest.mark.parametrize("n", [3, 30])
def test_query_count_is_constant_in_students(client, api_headers, course, professor, n, django_assert_max_num_queries):
    session = _session_with(course, professor, n)
    headers = api_headers(professor.user)
    with django_assert_max_num_queries(10):
        response = client.get(url(session.pk), **headers)
    assert len(response.json()["students"]) == n
    with django_assert_max_num_queries(10):
        assert client.get(url(session.pk, "export.csv"), **headers).status_code == 200


def test_schema_documents_the_endpoints(client):
    schema = client.get("/api/schema/?format=json").json()
    assert "/api/v1/sessions/{session_id}/analytics/" in schema["paths"]
    assert "/api/v1/students/{student_id}/progress/" in schema["paths"]


def test_results_of_an_older_version_are_recomputed_on_read(client, api_headers, professor, scripted, django_capture_on_commit_callbacks):
    session, _, _ = scripted
    SessionAnalytics.objects.filter(session=session).update(version=1)
    StudentProgress.objects.filter(session=session).update(version=1)
    with django_capture_on_commit_callbacks(execute=True):
        doc = client.get(url(session.pk), **api_headers(professor.user)).json()
    assert doc["status"] == "pending" and len(doc["students"]) == 4  # the old numbers stay readable
    doc = client.get(url(session.pk), **api_headers(professor.user)).json()
    assert doc["status"] == "ready" and doc["version"] == services.VERSION


def test_enrolled_student_outside_the_session_sees_an_empty_own_view(client, api_headers, course, scripted):
    session, _, _ = scripted
    enrolled = factories.EnrollmentFactory(course=course, student__user__username="late").student
    doc = client.get(url(session.pk), **api_headers(enrolled.user)).json()
    assert doc["students"] == [] and "participation" not in doc


def test_student_of_another_course_is_refused(client, api_headers, tenant, scripted, assert_api_error):
    session, _, _ = scripted
    other = factories.EnrollmentFactory(course=factories.CourseFactory(tenant=tenant), student__user__username="o").student
    assert_api_error(client.get(url(session.pk), **api_headers(other.user)), 403, "forbidden")
