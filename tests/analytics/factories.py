"""Analytics rows for page tests: a session with rooms, students, lines and computed figures."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from django.utils import timezone

from analytics.models import SessionAnalytics, StudentProgress
from tests import factories

StudentProgressFactory = factories.StudentProgressFactory
SessionAnalyticsFactory = factories.SessionAnalyticsFactory


@dataclass
class ReportSession:
    session: object
    rooms: list = field(default_factory=list)
    students: list = field(default_factory=list)
    progress: list = field(default_factory=list)
    analytics: object = None


def report_session(*, course, professor, students: int = 3, rooms: int = 2, title: str = "Loops lab",
                   started_at=None, status: str = SessionAnalytics.Status.READY) -> ReportSession:
    """An ended session: `rooms` rooms, `students` students spread over them, each with three
    lines (a question, an explanation, a confused one), and computed figures pointing at them."""
    started = started_at or timezone.now() - timedelta(hours=2)
    session = factories.LiveSessionFactory(
        course=course, professor=professor, title=title, status="ended",
        started_at=started, ended_at=started + timedelta(hours=1),
    )
    made = ReportSession(session=session)
    made.rooms = [
        factories.BreakoutRoomFactory(session=session, number=n + 1, name=f"Room {n + 1}", topic="loops")
        for n in range(rooms)
    ]
    seq = 0
    confusion_seqs: list[int] = []
    for i in range(students):
        room = made.rooms[i % rooms]
        enrollment = factories.EnrollmentFactory(
            course=course, student__user__tenant=course.tenant, student__user__first_name=f"Student{i:02d}",
        )
        student = enrollment.student
        factories.RoomAssignmentFactory(room=room, session=session, student=student)
        lines = []
        for n, text in enumerate(("What is a for loop?", "It repeats because the range has items.", "I don't get range")):
            seq += 1
            factories.TranscriptSegmentFactory(
                session=session, room=room, seq=seq, speaker_user=student.user, speaker_kind="student",
                speaker_name=student.user.display_name, text=text, start_ms=(i * 3 + n) * 120_000, end_ms=(i * 3 + n) * 120_000 + 2000,
                source="speech" if n == 1 else "text",
            )
            lines.append(seq)
        confusion_seqs.append(lines[2])
        made.students.append(student)
        made.progress.append(StudentProgress.objects.create(
            session=session, student=student, text_turns=2, speech_turns=1, talk_time_ms=4000,
            questions_asked=1, words=18, hints_needed=0, engagement_score=min(100, 30 + 7 * i),
            topics_covered=[{"topic": "loops", "segments": lines[:2]}],
            confusion_points=[{"topic": "range", "signal": "explicit", "seq": lines[2], "evidence": "don't get"}],
            evidence={"turns": lines, "questions": [lines[0]], "explanations": [lines[1]]},
            computed_at=timezone.now(),
        ))
    made.analytics = SessionAnalytics.objects.create(
        session=session, status=status, progress=100 if status == "ready" else 40,
        summary="The rooms worked on for loops; range confused a few.", summary_offline=True,
        participation={"gini": 0.1},
        room_comparison=[
            {"room_id": r.pk, "name": r.name, "students": len(made.students[n::rooms]), "turns": 9,
             "words": 54, "talk_time_ms": 12000, "confusion": 3, "engagement_avg": 50.5}
            for n, r in enumerate(made.rooms)
        ],
        confusion_topics=[{"topic": "range", "count": len(confusion_seqs), "rooms": [r.name for r in made.rooms], "seqs": confusion_seqs}],
        version=2, computed_at=timezone.now(),
    )
    return made
