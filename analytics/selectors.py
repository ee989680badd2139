"""Reads of the analytics app, with who may see what.

A session's analytics: its professor, the professors of its course, staff of its tenant and the
operator see every student (`AnalyticsAccess.full`); a student of the session (assigned to a
room, or enrolled in the course) sees only their own numbers; anyone else of the tenant is
refused (Forbidden); another tenant's session does not exist for them (NotFound).

Documents are built with a constant number of queries whatever the number of students.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.urls import reverse

from analytics.models import SessionAnalytics, StudentProgress
from courses.exceptions import DomainError, Forbidden, NotFound
from courses.models import Course, Enrollment, Student, User
from sessions.models import BreakoutRoom, LiveSession, RoomAssignment, TranscriptSegment
from sessions.selectors import _require_login, _tenant_scope, user_can_monitor


@dataclass(frozen=True, slots=True)
class AnalyticsAccess:
    session: LiveSession
    student: Student | None  # set: a student, who sees only this student's numbers

    @property
    def full(self) -> bool:
        return self.student is None


def _teaches(user: User, course_id: int) -> bool:
    return Course.objects.filter(pk=course_id, professors__user_id=user.pk).exists()


def analytics_access(*, user: User, session_id: int) -> AnalyticsAccess:
    """Who the user is to this session's analytics, or Unauthenticated / NotFound / Forbidden."""
    _require_login(user)
    session = (
        _tenant_scope(LiveSession.objects.select_related("course", "professor", "tenant"), user)
        .filter(pk=session_id)
        .first()
    )
    if session is None:
        raise NotFound("No such session.")
    if user_can_monitor(user=user, session=session) or (
        user.role == User.Role.PROFESSOR and _teaches(user, session.course_id)
    ):
        return AnalyticsAccess(session=session, student=None)
    if user.role == User.Role.STUDENT:
        student = Student.objects.filter(user_id=user.pk).first()
        if student is not None and (
            RoomAssignment.objects.filter(session_id=session.pk, student_id=student.pk).exists()
            or Enrollment.objects.filter(course_id=session.course_id, student_id=student.pk).exists()
        ):
            return AnalyticsAccess(session=session, student=student)
    raise Forbidden("Only the session's professors and its students see its analytics.")


def analytics_access_full(*, user: User, session_id: int) -> AnalyticsAccess:
    """As `analytics_access`, for what only professors and staff may do (recompute, export)."""
    access = analytics_access(user=user, session_id=session_id)
    if not access.full:
        raise Forbidden("Only the session's professors and the tenant's staff may do this.")
    return access


def analytics_access_student(*, user: User, session_id: int, student_id: int) -> AnalyticsAccess:
    """One student's numbers: everyone with full access, or that student."""
    access = analytics_access(user=user, session_id=session_id)
    if not access.full and access.student.pk != student_id:
        raise Forbidden("You can see only your own numbers.")
    return access


def _transcript_url(room_id: int | None, session_id: int, seq: int) -> str:
    if room_id is None:
        return reverse("api:session-transcript-export", kwargs={"session_id": session_id, "fmt": "json"})
    return reverse("api:room-transcript", kwargs={"room_id": room_id}) + f"?after_seq={max(0, seq - 1)}"


def _ints(values: Any) -> list[int]:
    return [v for v in values if isinstance(v, int) and not isinstance(v, bool)] if isinstance(values, list) else []


def _seqs_of(row: StudentProgress) -> set[int]:
    """Every seq behind a row's numbers; odd JSON (older versions) is skipped, as the pages do."""
    seqs: set[int] = set()
    for values in (row.evidence if isinstance(row.evidence, dict) else {}).values():
        seqs.update(_ints(values))
    for topic in row.topics_covered if isinstance(row.topics_covered, list) else []:
        if isinstance(topic, dict):
            seqs.update(_ints(topic.get("segments")))
    for point in row.confusion_points if isinstance(row.confusion_points, list) else []:
        if isinstance(point, dict):
            seqs.update(_ints([point.get("seq")]))
    return seqs


def student_row(row: StudentProgress, *, room: dict[str, Any] | None, session_id: int) -> dict[str, Any]:
    """The contract's student entry, with the extras: name, room, evidence seqs and their links."""
    room_id = room["id"] if room else None
    detail = reverse("api:analytics-student", kwargs={"session_id": session_id, "student_id": row.student_id})
    return {
        "student": row.student_id,
        "name": row.student.user.display_name,
        "room": room,
        "talk_time_ms": row.talk_time_ms,
        "turns": row.turns,
        "speech_turns": row.speech_turns,
        "text_turns": row.text_turns,
        "words": row.words,
        "questions": row.questions_asked,
        "hints_needed": row.hints_needed,
        "topics": row.topics_covered,
        "confusion_points": row.confusion_points,
        "engagement_score": row.engagement_score,
        "evidence": row.evidence,
        "transcript_links": {str(seq): _transcript_url(room_id, session_id, seq) for seq in sorted(_seqs_of(row))},
        "detail_url": detail,
    }


def _rooms(session_id: int) -> tuple[dict[int, dict[str, Any]], dict[int, int]]:
    rooms = {
        room_id: {"id": room_id, "name": name, "topic": topic}
        for room_id, name, topic in BreakoutRoom.objects.filter(session_id=session_id).values_list("id", "name", "topic")
    }
    room_of = dict(RoomAssignment.objects.filter(session_id=session_id).values_list("student_id", "room_id"))
    return rooms, room_of


def session_analytics_get(*, session: LiveSession) -> SessionAnalytics | None:
    return SessionAnalytics.objects.filter(session_id=session.pk).first()


def analytics_document(
    *, access: AnalyticsAccess, analytics: SessionAnalytics | None, student_id: int | None = None
) -> dict[str, Any]:
    """The API document of a session's analytics (the contract's keys first), for one viewer.
    A student viewer gets only their own entry and none of the whole-session figures."""
    session = access.session
    rows = StudentProgress.objects.filter(session_id=session.pk).select_related("student__user").order_by(
        "student__user__last_name", "student__user__first_name", "student__user__username"
    )
    only = access.student.pk if access.student is not None else student_id
    if only is not None:
        rows = rows.filter(student_id=only)
    rooms, room_of = _rooms(session.pk)
    students = [student_row(row, room=rooms.get(room_of.get(row.student_id)), session_id=session.pk) for row in rows]
    status = analytics.status if analytics else SessionAnalytics.Status.PENDING
    doc: dict[str, Any] = {
        "session": session.pk,
        "students": students,
        "summary": analytics.summary if analytics and access.full else "",
        "status": status,
        "progress": analytics.progress if analytics else 0,
        "version": analytics.version if analytics else 0,
        "computed_at": analytics.computed_at.isoformat() if analytics and analytics.computed_at else None,
        "final": bool(analytics and (analytics.participation or {}).get("final", False)),
        "summary_offline": bool(analytics and analytics.summary_offline),
        "title": session.title,
        "course": session.course_id,
    }
    if access.full:
        doc["participation"] = analytics.participation if analytics else {}
        doc["rooms"] = [
            {**row, "name": rooms.get(row.get("room_id"), {}).get("name", "")}
            for row in (analytics.room_comparison if analytics else [])
        ]
        doc["confusion_topics"] = analytics.confusion_topics if analytics else []
    return doc


def evidence_lines(*, session_id: int, seqs: set[int]) -> list[dict[str, Any]]:
    """The transcript lines behind a student's numbers, in seq order (one query)."""
    rows = (
        TranscriptSegment.objects.filter(session_id=session_id, seq__in=sorted(seqs))
        .order_by("seq")
        .values("seq", "room_id", "speaker_kind", "speaker_name", "text", "source", "start_ms", "end_ms")
    )
    return [
        {
            "seq": row["seq"], "room": row["room_id"], "speaker": row["speaker_name"],
            "speaker_kind": row["speaker_kind"], "text": row["text"], "source": row["source"],
            "start_ms": row["start_ms"], "end_ms": row["end_ms"],
        }
        for row in rows
    ]


def student_document(*, access: AnalyticsAccess, student_id: int) -> dict[str, Any]:
    """One student's numbers in a session, with the transcript text of every seq behind them."""
    session = access.session
    row = (
        StudentProgress.objects.filter(session_id=session.pk, student_id=student_id)
        .select_related("student__user")
        .first()
    )
    analytics = session_analytics_get(session=session)
    if row is None:
        if not RoomAssignment.objects.filter(session_id=session.pk, student_id=student_id).exists():
            raise NotFound("No such student in this session.")
        return {
            "session": session.pk, "student": student_id, "status": analytics.status if analytics else "pending",
            "lines": [],
        }
    rooms, room_of = _rooms(session.pk)
    doc = student_row(row, room=rooms.get(room_of.get(student_id)), session_id=session.pk)
    doc["session"] = session.pk
    doc["status"] = analytics.status if analytics else SessionAnalytics.Status.PENDING
    doc["version"] = row.version
    doc["lines"] = evidence_lines(session_id=session.pk, seqs=_seqs_of(row))
    return doc


def student_progress_rows(*, user: User, student_id: int, course: str | None) -> dict[str, Any]:
    """A student's sessions (of one course with `course`), oldest first, for trends."""
    _require_login(user)
    if course is not None and not (course.isascii() and course.isdigit()):
        raise DomainError("`course` is a course id.", code="invalid", fields={"course": ["A number."]})
    student = _tenant_scope(Student.objects.select_related("user"), user).filter(pk=student_id).first()
    if student is None:
        raise NotFound("No such student.")
    rows = StudentProgress.objects.filter(student_id=student.pk).select_related("session")
    if course is not None:
        rows = rows.filter(session__course_id=int(course))
    is_self = student.user_id == user.pk
    if not (is_self or user.is_superuser or user.role == User.Role.STAFF):
        if user.role != User.Role.PROFESSOR:
            raise Forbidden("You can see only your own progress.")
        # a professor: the sessions of the courses they teach, or that they ran
        from django.db.models import Q

        rows = rows.filter(Q(session__course__professors__user_id=user.pk) | Q(session__professor__user_id=user.pk))
        if not Enrollment.objects.filter(student_id=student.pk, course__professors__user_id=user.pk).exists():
            raise Forbidden("This student takes none of your courses.")
    sessions = [
        {
            "session": row.session_id,
            "title": row.session.title,
            "course": row.session.course_id,
            "started_at": row.session.started_at.isoformat() if row.session.started_at else None,
            "talk_time_ms": row.talk_time_ms,
            "turns": row.turns,
            "words": row.words,
            "questions": row.questions_asked,
            "hints_needed": row.hints_needed,
            "topics": [
                str(topic["topic"]) for topic in (row.topics_covered if isinstance(row.topics_covered, list) else [])
                if isinstance(topic, dict) and topic.get("topic")
            ],
            "confusion_count": len(row.confusion_points or []),
            "engagement_score": row.engagement_score,
            "version": row.version,
        }
        for row in rows.distinct().order_by("session__started_at", "session__created_at", "session_id")
    ]
    return {
        "student": student.pk, "name": student.user.display_name,
        "course": int(course) if course is not None else None, "sessions": sessions,
    }
