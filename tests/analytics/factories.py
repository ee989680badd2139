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
        participation={"students": students, "silent": 0, "top_quarter_share": 0.4, "gini": 0.1, "final": True},
        room_comparison=[
            {"room_id": r.pk, "name": r.name, "students": len(made.students[n::rooms]), "turns": 9,
             "words": 54, "talk_time_ms": 12000, "confusion_count": 3, "engagement_avg": 50.5}
            for n, r in enumerate(made.rooms)
        ],
        confusion_topics=[{"topic": "range", "count": len(confusion_seqs), "rooms": [r.pk for r in made.rooms], "seqs": confusion_seqs}],
        version=2, computed_at=timezone.now(),
    )
    return made


DEMO_LINES = [
    "What does range(5) give me, does it include 5?",
    "It stops before 5, because range excludes the end, so that means 0 to 4.",
    "I don't get why the loop variable keeps its last value.",
    "Actually, wait, the loop runs once per item in the list.",
    "So a while loop is for when we do not know how many times, for example reading input.",
    "Why does my recursion never stop?",
    "I'm confused about the base case.",
    "Oh, it returns when n is zero because that is the base case.",
]


def demo_report_session(*, course, students, rooms: int = 3, minutes: int = 45) -> ReportSession:
    """A plausible ended session of the demo course for browser tests and the README screenshot:
    `students` (already enrolled) over `rooms` rooms, a line every few minutes, figures that
    match the lines."""
    started = timezone.now() - timedelta(hours=3)
    session = factories.LiveSessionFactory(
        course=course, professor=course.professors.first(), title="Loops and recursion lab", status="ended",
        started_at=started, ended_at=started + timedelta(minutes=minutes),
    )
    made = ReportSession(session=session)
    topics = ["For loop", "While loop", "Recursion"]  # CS101 scope terms
    made.rooms = [
        factories.BreakoutRoomFactory(session=session, number=n + 1, name=f"Room {n + 1}", topic=topics[n % 3])
        for n in range(rooms)
    ]
    seq = 0
    topic_seqs: dict[str, list[int]] = {"range": [], "base case": []}
    topic_rooms: dict[str, set[int]] = {"range": set(), "base case": set()}
    for i, student in enumerate(students):
        room = made.rooms[i % rooms]
        factories.RoomAssignmentFactory(room=room, session=session, student=student)
        evidence: dict[str, list[int]] = {"turns": [], "questions": [], "explanations": [], "self_corrections": []}
        confusion = []
        text_turns = speech_turns = 0
        for n in range(3 + (i * 5) % 7):
            seq += 1
            text = DEMO_LINES[(i + n) % len(DEMO_LINES)]
            at = ((n * 7 + i * 3) % minutes) * 60_000
            speech = (i + n) % 3 == 0
            factories.TranscriptSegmentFactory(
                session=session, room=room, seq=seq, speaker_user=student.user, speaker_kind="student",
                speaker_name=student.user.display_name, text=text, start_ms=at, end_ms=at + 4000,
                source="speech" if speech else "text",
            )
            speech_turns += speech
            text_turns += not speech
            evidence["turns"].append(seq)
            if text.endswith("?"):
                evidence["questions"].append(seq)
            if "because" in text or "for example" in text:
                evidence["explanations"].append(seq)
            if text.startswith("Actually"):
                evidence["self_corrections"].append(seq)
            if "don't get" in text or "confused" in text:
                topic = "range" if "loop" in text else "base case"
                confusion.append({"topic": topic, "signal": "explicit_confusion", "seq": seq, "evidence": text[:40]})
                topic_seqs[topic].append(seq)
                topic_rooms[topic].add(room.pk)
        made.students.append(student)
        score = min(100, 12 + 10 * len(evidence["explanations"]) + 7 * len(evidence["questions"]) + 5 * len(evidence["turns"]))
        made.progress.append(StudentProgress.objects.create(
            session=session, student=student, text_turns=text_turns, speech_turns=speech_turns,
            talk_time_ms=speech_turns * 4000, questions_asked=len(evidence["questions"]),
            words=12 * len(evidence["turns"]), engagement_score=score,
            topics_covered=[{"topic": room.topic.lower(), "segments": evidence["turns"][:2]}],
            confusion_points=confusion, evidence=evidence, computed_at=timezone.now(),
        ))
    made.analytics = SessionAnalytics.objects.create(
        session=session, status=SessionAnalytics.Status.READY, progress=100, summary_offline=True, version=2,
        participation={"students": len(students), "silent": 0, "top_quarter_share": 0.33, "gini": 0.18, "final": True},
        summary=(
            "Rooms 1 and 2 worked through for loops and range; most students explained why range stops "
            "before its end. Room 3 reached recursion, where the base case confused several students."
        ),
        room_comparison=[
            {
                "room_id": r.pk, "name": r.name, "students": len(made.progress[n::rooms]),
                "turns": sum(p.turns for p in made.progress[n::rooms]),
                "words": sum(p.words for p in made.progress[n::rooms]),
                "talk_time_ms": sum(p.talk_time_ms for p in made.progress[n::rooms]),
                "confusion_count": sum(len(p.confusion_points) for p in made.progress[n::rooms]),
                "engagement_avg": sum(p.engagement_score for p in made.progress[n::rooms]) / max(1, len(made.progress[n::rooms])),
            }
            for n, r in enumerate(made.rooms)
        ],
        confusion_topics=[
            {"topic": t, "count": len(s), "rooms": sorted(topic_rooms[t]), "seqs": s} for t, s in topic_seqs.items() if s
        ],
        computed_at=timezone.now(),
    )
    return made
