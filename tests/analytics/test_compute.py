"""analytics.services.session_analytics_compute: rows stored, versioned, idempotent, progress."""

from __future__ import annotations

import pytest

from analytics import services
from analytics.models import SessionAnalytics, StudentProgress
from tests import factories
from tests.analytics import scripted_session as script
from tests.support.openai_standin import openai_standin  # noqa: F401  (a fixture)

pytestmark = pytest.mark.usefixtures("fast_password_hashing")


@pytest.fixture
def scripted(course, professor):
    return script.build(course=course, professor=professor)


def _snapshot(session):
    rows = StudentProgress.objects.filter(session=session).order_by("student_id")
    return [
        (row.pk, row.student_id, row.talk_time_ms, row.turns, row.words, row.questions_asked, row.hints_needed,
         row.topics_covered, row.confusion_points, row.engagement_score, row.evidence, row.version)
        for row in rows
    ]


def test_compute_stores_the_hand_computed_numbers(scripted):
    session, students, rooms = scripted
    analytics = services.session_analytics_compute(session_id=session.pk)
    assert analytics.status == "ready" and analytics.progress == 100 and analytics.version == services.VERSION
    for key, expected in script.EXPECTED.items():
        row = StudentProgress.objects.get(session=session, student=students[key])
        for name, value in expected.items():
            assert getattr(row, name) == value, (key, name)
        assert row.version == services.VERSION and row.computed_at is not None
    assert analytics.participation["silent"] == 1 and analytics.participation["final"] is True
    assert [row["room_id"] for row in analytics.room_comparison] == [rooms["r1"].pk, rooms["r2"].pk]
    assert analytics.confusion_topics[0] == {
        "topic": "recursion", "count": 3, "rooms": [rooms["r1"].pk], "seqs": [4, 7, 8],
    }


def test_summary_falls_back_to_extractive_without_a_model(scripted):
    session, _, _ = scripted
    analytics = services.session_analytics_compute(session_id=session.pk)
    assert analytics.summary_offline is True
    assert analytics.summary.startswith("Offline summary")
    assert "recursion (3)" in analytics.summary  # confusion topics
    assert "#4 Ben: I don't get recursion" in analytics.summary


def test_a_failing_llm_falls_back_and_never_fails_the_computation(scripted, monkeypatch):
    from analytics import summary

    async def boom(**kwargs):
        raise RuntimeError("provider down")

    monkeypatch.setattr(summary, "_llm_summary", boom)
    session, _, _ = scripted
    analytics = services.session_analytics_compute(session_id=session.pk)
    assert analytics.status == "ready" and analytics.summary_offline is True


@pytest.mark.django_db(transaction=True)
def test_llm_summary_through_the_tenants_chain(course, professor, openai_standin, settings):  # noqa: F811
    from analytics.models import UsageEvent
    from tests.support.openai_standin import Reply

    settings.OPENAI_BASE_URL, settings.OPENAI_API_KEY = openai_standin.base_url, "sk-test"
    factories.LLMModelFactory(tenant=course.tenant, position=1, model_name="summary-model")
    openai_standin.script(Reply("1. Topics covered: recursion"))
    session, _, _ = script.build(course=course, professor=professor)
    analytics = services.session_analytics_compute(session_id=session.pk)
    assert analytics.summary == "1. Topics covered: recursion" and analytics.summary_offline is False
    prompt = openai_standin.requests[0]["json"]["messages"][0]["content"]  # the summary; the refinement follows
    assert "I don't get recursion at all" in prompt and "CS101" in prompt
    assert UsageEvent.objects.filter(session=session, kind="llm", outcome="ok").exists()


def test_recompute_is_idempotent_same_ids_same_content(scripted):
    session, _, _ = scripted
    first = services.session_analytics_compute(session_id=session.pk)
    before = _snapshot(session)
    second = services.session_analytics_compute(session_id=session.pk)
    assert _snapshot(session) == before
    assert second.pk == first.pk and second.version == first.version
    assert (second.participation, second.room_comparison, second.confusion_topics, second.summary) == (
        first.participation, first.room_comparison, first.confusion_topics, first.summary
    )


def test_an_older_version_never_overwrites_a_newer_one(scripted):
    session, _, _ = scripted
    services.session_analytics_compute(session_id=session.pk)
    SessionAnalytics.objects.filter(session=session).update(version=services.VERSION + 1, summary="newer")
    StudentProgress.objects.filter(session=session).update(version=services.VERSION + 1, engagement_score=99)
    for final in (True, False):
        analytics = services.session_analytics_compute(session_id=session.pk, final=final)
        assert analytics.version == services.VERSION + 1 and analytics.summary == "newer"
    assert set(StudentProgress.objects.filter(session=session).values_list("engagement_score", flat=True)) == {99}


def test_progress_is_reported_as_it_goes(scripted):
    session, _, _ = scripted
    seen = []

    def report(value):
        seen.append((value, SessionAnalytics.objects.get(session=session).status))

    services.session_analytics_compute(session_id=session.pk, progress=report)
    assert [v for v, _ in seen] == [30, 60, 90, 100]
    assert all(status == "computing" for _, status in seen[:-1])


def test_a_failure_marks_the_analytics_failed(scripted, monkeypatch):
    session, _, _ = scripted

    def broken(inp):
        raise ZeroDivisionError

    monkeypatch.setattr(services.metrics, "session_metrics", broken)
    with pytest.raises(ZeroDivisionError):
        services.session_analytics_compute(session_id=session.pk)
    assert SessionAnalytics.objects.get(session=session).status == "failed"


def test_incremental_run_during_the_session(scripted):
    session, students, _ = scripted
    analytics = services.session_analytics_compute(session_id=session.pk, final=False)
    assert analytics.participation["final"] is False and analytics.status == "ready"
    assert analytics.summary_offline is True  # never calls the model while the class runs
    assert StudentProgress.objects.get(session=session, student=students["ben"]).questions_asked == 2


def test_a_student_moved_out_loses_their_row(scripted):
    from sessions.models import RoomAssignment

    session, students, _ = scripted
    services.session_analytics_compute(session_id=session.pk)
    RoomAssignment.objects.filter(session=session, student=students["dee"]).delete()
    services.session_analytics_compute(session_id=session.pk)
    assert not StudentProgress.objects.filter(session=session, student=students["dee"]).exists()
    assert StudentProgress.objects.filter(session=session).count() == 3


def test_unknown_session_is_none(db):
    assert services.session_analytics_compute(session_id=999999) is None


def test_query_count_is_constant_in_students_and_lines(course, professor, django_assert_max_num_queries):
    from sessions.models import TranscriptSegment

    def build(n):
        session = factories.LiveSessionFactory(course=course, tenant=course.tenant, professor=professor)
        room = factories.BreakoutRoomFactory(session=session)
        seq = 0
        for _ in range(n):
            assignment = factories.RoomAssignmentFactory(room=room, session=session)
            for _ in range(3):
                seq += 1
                TranscriptSegment.objects.create(
                    session=session, room=room, seq=seq, speaker_kind="student",
                    speaker_user=assignment.student.user, speaker_name="S", text="How does a loop stop?",
                    start_ms=seq * 1000, end_ms=seq * 1000,
                )
        return session

    small, large = build(2), build(20)
    services.session_analytics_compute(session_id=small.pk)  # first run creates rows
    services.session_analytics_compute(session_id=large.pk)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    counts = []
    for session in (small, large):
        with django_assert_max_num_queries(20), CaptureQueriesContext(connection) as queries:
            services.session_analytics_compute(session_id=session.pk)
        counts.append(len(queries))
    assert counts[0] == counts[1], counts  # 2 vs 20 students, 6 vs 60 lines


def test_the_task_keeps_its_name_and_signature(scripted):
    from analytics.tasks import session_analytics_compute

    session, _, _ = scripted
    assert session_analytics_compute.name == "analytics.session_analytics_compute"
    session_analytics_compute.delay(session.pk)
    assert SessionAnalytics.objects.get(session=session).participation["final"] is True
    type(session).objects.filter(pk=session.pk).update(status="live")
    session_analytics_compute.delay(session.pk, False)
    assert SessionAnalytics.objects.get(session=session).participation["final"] is False


def test_silence_setting_is_honoured(scripted, settings):
    session, students, _ = scripted
    settings.ANALYTICS_SILENCE_SECONDS = 200
    services.session_analytics_compute(session_id=session.pk)
    dee = StudentProgress.objects.get(session=session, student=students["dee"])
    assert dee.confusion_points == []


def test_incremental_run_keeps_a_model_written_summary(scripted):
    session, _, _ = scripted
    services.session_analytics_compute(session_id=session.pk)
    SessionAnalytics.objects.filter(session=session).update(summary="By the model", summary_offline=False)
    analytics = services.session_analytics_compute(session_id=session.pk, final=False)
    assert analytics.summary == "By the model" and analytics.summary_offline is False


def test_a_long_transcript_sends_the_most_telling_lines_within_the_budget(monkeypatch):
    from analytics import summary
    from analytics.metrics import Line

    monkeypatch.setattr(summary, "HISTORY_CHARS", 300)
    lines = [Line(seq=n, room_id=1, speaker="student", student_id=1, text=f"ok number {n}") for n in range(1, 40)]
    lines.append(Line(seq=40, room_id=1, speaker="student", student_id=1, text="I don't get recursion at all"))
    lines.insert(0, Line(seq=0, room_id=1, speaker="student", student_id=1, text="Why is a loop like recursion?"))
    rows = summary._history(lines, names={1: "Ana"}, room_names={1: "Room 1"}, terms=["loop", "recursion"])
    texts = [row["text"] for row in rows]
    assert texts[0] == "Why is a loop like recursion?" and "I don't get recursion at all" in texts
    assert sum(len(r["name"]) + len(r["text"]) + 4 for r in rows) <= 300
    assert texts[-1] == "I don't get recursion at all"  # seq order kept


def test_a_late_incremental_run_does_not_make_a_final_result_provisional(scripted):
    session, _, _ = scripted  # the scripted session has ended
    services.session_analytics_compute(session_id=session.pk)
    analytics = services.session_analytics_compute(session_id=session.pk, final=False)
    assert analytics.participation["final"] is True


def test_a_recompute_after_the_retention_purge_keeps_the_numbers(scripted):
    """Retention deletes the transcript and keeps the analytics (analytics/retention.py); a later
    recompute (a version bump re-queues old sessions) has nothing to count and must not zero them."""
    from datetime import timedelta

    from django.utils import timezone

    from analytics.retention import retention_purge
    from sessions.models import TranscriptSegment

    session, _, _ = scripted
    first = services.session_analytics_compute(session_id=session.pk)
    before = _snapshot(session)
    LiveSession = type(session)
    LiveSession.objects.filter(pk=session.pk).update(ended_at=timezone.now() - timedelta(days=1))
    retention_purge(now=timezone.now() + timedelta(days=session.tenant.retention_days))
    assert not TranscriptSegment.objects.filter(session=session).exists()
    SessionAnalytics.objects.filter(session=session).update(version=services.VERSION - 1)

    again = services.session_analytics_compute(session_id=session.pk)
    assert _snapshot(session) == before
    assert again.status == "ready" and again.progress == 100
    assert (again.summary, again.participation, again.confusion_topics) == (
        first.summary, first.participation, first.confusion_topics
    )
    assert again.version == services.VERSION  # not re-queued by every read of the API
