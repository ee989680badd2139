"""Analytics pages: who sees them, what they show (SVG charts with numbers, evidence links that
resolve), empty and pending states, and query counts that do not grow with students or rooms."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest
from django.urls import reverse

from analytics.models import SessionAnalytics, StudentProgress
from tests import factories
from tests.analytics.factories import report_session

pytestmark = pytest.mark.usefixtures("fast_password_hashing")

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def made(course, professor):
    return report_session(course=course, professor=professor, students=3, rooms=2)


def _svg(html: str, figure_id: str) -> ET.Element:
    match = re.search(rf'<figure class="chart-figure" id="{figure_id}">(.*?)</figure>', html, re.S)
    assert match, f"no figure {figure_id}"
    return ET.fromstring(match.group(1))  # noqa: S314 (our own output)


def _bars(root: ET.Element) -> list[ET.Element]:
    return [r for r in root.iter(f"{SVG}rect") if "chart-bar" in (r.get("class") or "")]


def _titles(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{SVG}title")]


# --- Session report -------------------------------------------------------------------------------


def test_session_report_shows_charts_with_numbers_and_links(client, professor, made):
    client.force_login(professor.user)
    response = client.get(reverse("session-report", args=[made.session.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Offline summary" in html and "range confused a few" in html
    engagement = _svg(html, "chart-engagement")
    assert len(_bars(engagement)) == 3
    scores = sorted((p.engagement_score for p in made.progress), reverse=True)
    assert [t for t in _titles(engagement) if ": " in t] == [
        f"{p.student.user.display_name}: {p.engagement_score}"
        for p in sorted(made.progress, key=lambda p: -p.engagement_score)
    ]
    assert scores == [44, 37, 30]
    participation = _svg(html, "chart-participation")
    assert len(_bars(participation)) == 6  # text and speech part per student
    assert any(t.endswith("Speech turns: 1") for t in _titles(participation))
    confusion = _svg(html, "chart-confusion")
    assert len(_bars(confusion)) == 1 and "range: 3" in _titles(confusion)
    timeline = _svg(html, "chart-timeline")
    assert len(timeline.findall(f"{SVG}path")) == 2  # one line per room
    assert len(_bars(_svg(html, "chart-rooms"))) == 2
    assert "took <strong>40%</strong> of the turns" in html and "provisional" not in html
    assert "in Room 1, Room 2" in html  # confusion topic's room ids as names
    assert re.search(r"<td class=\"num\">3</td><td class=\"num\">50.5</td>", html)  # confusion_count
    assert f"/sessions/{made.session.pk}/analytics.csv" in html
    assert reverse("session-report-print", args=[made.session.pk]) in html


def test_evidence_links_resolve_to_the_lines_behind_each_number(client, professor, made):
    client.force_login(professor.user)
    html = client.get(reverse("session-report", args=[made.session.pk])).content.decode()
    student = made.students[0]
    url = reverse("session-report-student", args=[made.session.pk, student.pk])
    assert f'href="{url}#questions"' in html and f'href="{url}#confusion"' in html
    page = client.get(url)
    assert page.status_code == 200
    body = page.content.decode()
    questions = body[body.index('id="questions"'):body.index('id="explanations"')]
    assert "What is a for loop?" in questions and "because the range" not in questions
    confusion = body[body.index('id="confusion"'):body.index('id="topics"')]
    assert "I don&#x27;t get range" in confusion and "explicit" in confusion
    topic_url = re.search(r'href="(/sessions/\d+/report/lines/\?topic=range)"', html).group(1)
    lines = client.get(topic_url).content.decode()
    assert lines.count('class="evidence-line"') == 3
    assert lines.count("explicit · range · “don&#x27;t get”") == 3  # each line's signal (an old code: its words)


def test_every_link_of_the_report_resolves(client, professor, made):
    client.force_login(professor.user)
    html = client.get(reverse("session-report", args=[made.session.pk])).content.decode()
    hrefs = {h.split("#")[0].replace("&amp;", "&") for h in re.findall(r'href="(/[^"]*)"', html)}
    internal = {h for h in hrefs if "/report" in h or "/rooms/" in h}
    assert len(internal) >= 3 + 2 + 1 + 1  # 3 evidence pages, 2 rooms, the topic's lines, print
    for href in sorted(internal):
        assert client.get(href).status_code == 200, href


def test_print_version_has_no_navigation_and_inline_charts(client, professor, made):
    client.force_login(professor.user)
    response = client.get(reverse("session-report-print", args=[made.session.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'class="site-header"' not in html and 'class="site-nav"' not in html
    assert html.count("<svg") == 5
    assert "analytics.css" in html


@pytest.mark.parametrize("status", ["pending", "computing"])
def test_pending_analytics_show_a_polling_progress_bar(client, professor, course, status):
    made = report_session(course=course, professor=professor, students=1, rooms=1, status=status)
    client.force_login(professor.user)
    html = client.get(reverse("session-report", args=[made.session.pk])).content.decode()
    status_url = reverse("session-report-status", args=[made.session.pk])
    assert 'role="progressbar"' in html and f'hx-get="{status_url}?was=busy"' in html
    fragment = client.get(status_url + "?was=busy")
    assert fragment.status_code == 200 and "HX-Refresh" not in fragment
    made.analytics.status = "ready"
    made.analytics.save()
    done = client.get(status_url + "?was=busy")
    assert done["HX-Refresh"] == "true"


def test_session_without_analytics_renders_a_useful_empty_state(client, professor, course):
    live = factories.LiveSessionFactory(course=course, professor=professor, status="live")
    client.force_login(professor.user)
    response = client.get(reverse("session-report", args=[live.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "No analytics yet" in html and "No data yet" in html
    assert client.get(reverse("session-report-print", args=[live.pk])).status_code == 200
    assert not SessionAnalytics.objects.filter(session=live).exists()  # live: nothing queued


def test_an_ended_session_without_analytics_is_queued_by_its_report(client, professor, course):
    """Its end-of-class queueing was lost (or it ended before analytics existed): the report
    queues the computation and polls, instead of promising results that never come."""
    ended = factories.LiveSessionFactory(course=course, professor=professor, status="ended")
    client.force_login(professor.user)
    html = client.get(reverse("session-report", args=[ended.pk])).content.decode()
    analytics = SessionAnalytics.objects.get(session=ended)
    assert analytics.status == SessionAnalytics.Status.PENDING
    status_url = reverse("session-report-status", args=[ended.pk])
    assert 'role="progressbar"' in html and f'hx-get="{status_url}?was=busy"' in html


def test_session_report_access(client, professor, made, student, staff_user, outsider):
    urls = [
        reverse("session-report", args=[made.session.pk]),
        reverse("session-report-print", args=[made.session.pk]),
        reverse("session-report-status", args=[made.session.pk]),
        reverse("session-report-student", args=[made.session.pk, made.students[0].pk]),
        reverse("session-report-lines", args=[made.session.pk]) + "?topic=range",
    ]
    for url in urls:
        assert client.get(url).status_code == 302, url  # anonymous: to the login page
        assert "/login/" in client.get(url)["Location"]
    client.force_login(staff_user)
    assert all(client.get(url).status_code == 200 for url in urls)
    client.force_login(student.user)
    assert all(client.get(url).status_code == 403 for url in urls)
    client.force_login(outsider.user)
    assert all(client.get(url).status_code == 404 for url in urls)
    co_teacher = factories.ProfessorFactory(user__tenant=made.session.tenant)
    made.session.course.professors.add(co_teacher)
    client.force_login(co_teacher.user)
    assert client.get(urls[0]).status_code == 200
    other_prof = factories.ProfessorFactory(user__tenant=made.session.tenant)
    client.force_login(other_prof.user)
    assert client.get(urls[0]).status_code == 403


def test_running_session_figures_are_marked_provisional(client, professor, made):
    made.analytics.participation = {"final": False}
    made.analytics.save()
    client.force_login(professor.user)
    html = client.get(reverse("session-report", args=[made.session.pk])).content.decode()
    assert "these figures are provisional" in html and "of the turns" not in html


def test_evidence_lines_link_to_their_place_in_the_room(client, professor, made):
    client.force_login(professor.user)
    student = made.students[0]
    html = client.get(reverse("session-report-student", args=[made.session.pk, student.pk])).content.decode()
    room = made.rooms[0]
    assert f'href="{reverse("room-detail", args=[room.pk])}#seq-1"' in html


def test_evidence_of_unknown_student_or_topic_is_404(client, professor, made, outsider):
    client.force_login(professor.user)
    stranger = factories.StudentFactory(user__tenant=made.session.tenant)
    foreign = factories.StudentFactory(user__tenant=outsider.tenant)
    for student_id in (stranger.pk, foreign.pk, 999_999):
        assert client.get(reverse("session-report-student", args=[made.session.pk, student_id])).status_code == 404
    lines = reverse("session-report-lines", args=[made.session.pk])
    assert client.get(lines + "?topic=nothing").status_code == 404
    assert client.get(lines).status_code == 404


def test_json_keys_missing_or_odd_do_not_break_the_report(client, professor, made):
    made.analytics.room_comparison = [{"room_id": None}, "junk", {"name": "Ghost", "turns": "x"}]
    made.analytics.confusion_topics = [{"topic": "recursion"}, {"count": 3}, 5]
    made.analytics.participation = []
    made.analytics.save()
    made.progress[0].evidence = {"turns": "junk", "questions": ["7", None, 1]}
    made.progress[0].confusion_points = [{"seq": "x"}, "junk"]
    made.progress[0].topics_covered = [{"segments": [1]}, {"topic": "loops"}]
    made.progress[0].save()
    client.force_login(professor.user)
    assert client.get(reverse("session-report", args=[made.session.pk])).status_code == 200
    url = reverse("session-report-student", args=[made.session.pk, made.students[0].pk])
    assert client.get(url).status_code == 200


# --- A student's own evidence page ----------------------------------------------------------------


def test_student_evidence_page_access(client, made, student, staff_user, outsider):
    own, theirs = made.students[0], made.students[1]
    own_url = reverse("session-report-student", args=[made.session.pk, own.pk])
    their_url = reverse("session-report-student", args=[made.session.pk, theirs.pk])
    assert client.get(own_url).status_code == 302  # anonymous: to the login page
    client.force_login(own.user)
    assert client.get(own_url).status_code == 200
    assert client.get(their_url).status_code == 403
    assert client.get(reverse("session-report", args=[made.session.pk])).status_code == 403  # the whole report stays theirs
    client.force_login(student.user)  # enrolled in the course, not in this session
    assert client.get(their_url).status_code == 403
    assert client.get(reverse("session-report-student", args=[made.session.pk, student.pk])).status_code == 404
    foreign = factories.StudentFactory(user__tenant=outsider.tenant)
    client.force_login(foreign.user)
    assert client.get(own_url).status_code == 404
    assert client.get(reverse("session-report-student", args=[made.session.pk, foreign.pk])).status_code == 404
    client.force_login(outsider.user)
    assert client.get(own_url).status_code == 404
    client.force_login(staff_user)
    assert client.get(own_url).status_code == 200 and client.get(their_url).status_code == 200


def test_a_student_sees_their_lines_and_numbers_and_no_other_students_words(client, professor, made):
    own, roommate = made.students[0], made.students[2]  # both in Room 1
    room = made.rooms[0]
    factories.TranscriptSegmentFactory(
        session=made.session, room=room, seq=100, speaker_kind="tutor", speaker_name="Tutor",
        text="Hint: try range(3) by hand.",
    )
    factories.TranscriptSegmentFactory(
        session=made.session, room=room, seq=101, speaker_kind="student", speaker_user=roommate.user,
        speaker_name=roommate.user.display_name, text="My secret is swordfish.",
    )
    progress = made.progress[0]
    progress.evidence = {**progress.evidence, "hints": [100], "turns": [*progress.evidence["turns"], 101]}
    progress.confusion_points = [
        {"topic": "range", "signal": "phrase", "seq": 3, "evidence": "I don't get"},
        {"topic": "range", "signal": "llm", "seq": 101, "evidence": "stuck"},  # a stray seq: another student's line
    ]
    progress.save()
    url = reverse("session-report-student", args=[made.session.pk, own.pk])

    client.force_login(own.user)
    body = client.get(url).content.decode()
    assert "What is a for loop?" in body and "Hint: try range(3) by hand." in body  # theirs and the tutor's
    assert f"Engagement {progress.engagement_score} / 100" in body
    assert "swordfish" not in body
    for other in made.students[1:]:
        assert other.user.display_name not in body
    turns = body[body.index('id="turns"'):body.index('id="questions"')]
    assert turns.count('class="evidence-line"') == 3 and "1 line of other students not shown" in turns
    assert "no longer in the transcript" not in turns
    confusion = body[body.index('id="confusion"'):body.index('id="topics"')]
    assert "said so · range" in confusion and "1 line of other students not shown" in confusion
    hrefs = {h.split("#")[0] for h in re.findall(r'href="(/[^"]*)"', body) if "/report" in h or "/rooms/" in h}
    assert reverse("session-report", args=[made.session.pk]) not in hrefs  # not theirs to open
    assert reverse("student-report", args=[made.session.course.pk, own.pk]) in hrefs
    assert reverse("room-detail", args=[room.pk]) in hrefs
    for href in sorted(hrefs):
        assert client.get(href).status_code == 200, href

    client.force_login(professor.user)  # the professor's view is unchanged: every line behind the numbers
    body = client.get(url).content.decode()
    assert "swordfish" in body and "not shown" not in body and "model: stuck" in body


def test_a_students_course_report_links_each_session_to_their_evidence(client, course, two_sessions):
    _, student = two_sessions
    client.force_login(student.user)
    html = client.get(reverse("student-report", args=[course.pk, student.pk])).content.decode()
    sessions = html[html.index('id="sessions-title"'):]
    links = re.findall(r'<th scope="row" class="cell-title"><a href="(/sessions/\d+/report/students/\d+/)">', sessions)
    assert len(links) == 3
    assert all(link.endswith(f"/report/students/{student.pk}/") for link in links)
    for link in links:
        assert client.get(link).status_code == 200, link


def test_confusion_signals_read_as_labels_on_the_evidence_page(client, professor, made):
    made.progress[0].confusion_points = [
        {"topic": "range", "signal": code, "seq": 3, "evidence": ""}
        for code in ("phrase", "repeated_question", "silence_after_question", "guardrail_redirect", "llm", "odd_one")
    ]
    made.progress[0].save()
    client.force_login(professor.user)
    body = client.get(reverse("session-report-student", args=[made.session.pk, made.students[0].pk])).content.decode()
    confusion = body[body.index('id="confusion"'):body.index('id="topics"')]
    for label in ("said so", "asked again", "silent after a question", "off-topic redirect", "model: stuck", "odd one"):
        assert f'<p class="small muted">{label} · range</p>' in confusion, label
    for code in ("phrase", "repeated_question", "silence_after_question", "guardrail_redirect"):
        assert f">{code} ·" not in confusion
    made.analytics.confusion_topics = [{"topic": "range", "count": 6, "seqs": [3]}]
    made.analytics.save()
    lines = client.get(reverse("session-report-lines", args=[made.session.pk]) + "?topic=range").content.decode()
    assert lines.count('class="evidence-line"') == 1
    for label in ("said so", "asked again", "silent after a question", "off-topic redirect", "model: stuck"):
        assert f'<p class="small muted">{label} · range</p>' in lines, label


@pytest.mark.parametrize("view", ["session-report", "session-report-print"])
def test_session_report_queries_do_not_grow_with_students_or_rooms(
    client, professor, course, django_assert_max_num_queries, view
):
    small = report_session(course=course, professor=professor, students=3, rooms=2, title="Small")
    large = report_session(course=course, professor=professor, students=30, rooms=6, title="Large")
    client.force_login(professor.user)
    client.get(reverse(view, args=[small.session.pk]))  # warm caches (session, user, templates)
    with django_assert_max_num_queries(12) as small_ctx:
        assert client.get(reverse(view, args=[small.session.pk])).status_code == 200
    with django_assert_max_num_queries(len(small_ctx.captured_queries)):
        response = client.get(reverse(view, args=[large.session.pk]))
    assert response.status_code == 200
    assert len(_bars(_svg(response.content.decode(), "chart-engagement"))) == 30


# --- Student report across the course -------------------------------------------------------------


@pytest.fixture
def two_sessions(course, professor):
    first = report_session(course=course, professor=professor, students=2, rooms=1, title="Week 1",
                           started_at=datetime(2026, 9, 7, 9, tzinfo=UTC))
    second = report_session(course=course, professor=professor, students=0, rooms=1, title="Week 2",
                            started_at=datetime(2026, 9, 9, 9, tzinfo=UTC))
    third = report_session(course=course, professor=professor, students=0, rooms=1, title="Week 3",
                           started_at=datetime(2026, 9, 15, 9, tzinfo=UTC))
    student = first.students[0]
    for made, score in ((second, 60), (third, 80)):
        factories.RoomAssignmentFactory(room=made.rooms[0], session=made.session, student=student)
        StudentProgress.objects.create(
            session=made.session, student=student, text_turns=4, questions_asked=2, engagement_score=score,
            topics_covered=[{"topic": "recursion", "segments": []}, {"topic": "graphs", "segments": []}],
        )
    return first, student


def test_student_report_by_session_and_by_week(client, professor, course, two_sessions):
    _, student = two_sessions
    client.force_login(professor.user)
    url = reverse("student-report", args=[course.pk, student.pk])
    html = client.get(url).content.decode()
    engagement = _svg(html, "chart-engagement")
    assert len(engagement.findall(f"{SVG}circle")) == 3
    assert "Engagement, Sep 07: 30" in _titles(engagement)
    assert "Engagement, Sep 15: 80" in _titles(engagement)
    activity = _svg(html, "chart-activity")
    assert len(activity.findall(f"{SVG}path")) == 3  # turns, questions, confusion
    # scope: python, variable, loop, function, recursion; "loops" is not "loop", recursion is covered
    assert "1 of 5" in html and "Also discussed: graphs, loops" in html
    weekly = client.get(url + "?by=week").content.decode()
    week = _svg(weekly, "chart-engagement")
    assert len(week.findall(f"{SVG}circle")) == 2
    assert "Engagement, 2026 W37: 45" in _titles(week)  # (30 + 60) / 2
    assert client.get(url + "?by=term-of-doom").status_code == 400


def test_student_report_access(client, professor, course, two_sessions, staff_user, outsider):
    first, student = two_sessions
    other = first.students[1]
    url = reverse("student-report", args=[course.pk, student.pk])
    assert client.get(url).status_code == 302
    client.force_login(student.user)
    assert client.get(url).status_code == 200  # their own
    assert client.get(reverse("student-report", args=[course.pk, other.pk])).status_code == 403
    client.force_login(staff_user)
    assert client.get(url).status_code == 200
    client.force_login(outsider.user)
    assert client.get(url).status_code == 404
    client.force_login(professor.user)
    not_enrolled = factories.StudentFactory(user__tenant=course.tenant)
    assert client.get(reverse("student-report", args=[course.pk, not_enrolled.pk])).status_code == 404


def test_student_report_without_sessions_says_so(client, professor, course, student):
    client.force_login(professor.user)
    html = client.get(reverse("student-report", args=[course.pk, student.pk])).content.decode()
    assert "No session figures yet" in html


# --- Course overview ------------------------------------------------------------------------------


def test_course_overview_lists_sessions_topics_and_students_needing_attention(client, professor, course, two_sessions):
    first, student = two_sessions
    client.force_login(professor.user)
    response = client.get(reverse("course-analytics", args=[course.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    engagement = _svg(html, "chart-engagement")
    assert len(_bars(engagement)) == 3
    assert "Sep 07 Week 1: 33.5" in _titles(engagement)  # (30 + 37) / 2
    topics = _svg(html, "chart-topics")
    assert _titles(topics)[1:] == ["range: 2"]  # Week 2 and 3 have the topic with no signal
    lowest = html[html.index('id="lowest-title"'):html.index('id="confused-title"')]
    assert lowest.index(first.students[1].user.display_name) < lowest.index(student.user.display_name)  # 37 < (30+60+80)/3
    assert reverse("student-report", args=[course.pk, student.pk]) in lowest
    assert reverse("session-report", args=[first.session.pk]) in html
    assert "2 students with figures · 2 enrolled" in html


def test_course_overview_access(client, professor, course, student, staff_user, outsider):
    url = reverse("course-analytics", args=[course.pk])
    assert client.get(url).status_code == 302
    client.force_login(student.user)
    assert client.get(url).status_code == 403
    client.force_login(outsider.user)
    assert client.get(url).status_code == 404
    client.force_login(staff_user)
    response = client.get(url)
    assert response.status_code == 200 and "No sessions yet" in response.content.decode()


def test_course_overview_and_student_report_queries_are_constant(
    client, professor, course, django_assert_max_num_queries
):
    first = report_session(course=course, professor=professor, students=3, rooms=2, title="S1")
    client.force_login(professor.user)
    overview = reverse("course-analytics", args=[course.pk])
    student_url = reverse("student-report", args=[course.pk, first.students[0].pk])
    client.get(overview)
    with django_assert_max_num_queries(12) as small_overview:
        client.get(overview)
    with django_assert_max_num_queries(12) as small_student:
        client.get(student_url)
    for n in range(3):
        report_session(course=course, professor=professor, students=10, rooms=3, title=f"Big {n}")
    with django_assert_max_num_queries(len(small_overview.captured_queries)):
        assert client.get(overview).status_code == 200
    with django_assert_max_num_queries(len(small_student.captured_queries)):
        assert client.get(student_url).status_code == 200


# --- Links from the existing pages ----------------------------------------------------------------


def test_session_and_course_pages_link_to_the_reports(client, professor, course, made, student):
    client.force_login(professor.user)
    detail = client.get(reverse("session-detail", args=[made.session.pk])).content.decode()
    assert reverse("session-report", args=[made.session.pk]) in detail
    course_page = client.get(reverse("course-detail", args=[course.pk])).content.decode()
    assert reverse("course-analytics", args=[course.pk]) in course_page
    client.force_login(student.user)
    course_page = client.get(reverse("course-detail", args=[course.pk])).content.decode()
    assert reverse("student-report", args=[course.pk, student.pk]) in course_page
    assert reverse("course-analytics", args=[course.pk]) not in course_page
