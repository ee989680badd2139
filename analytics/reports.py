"""What the analytics pages show: the session report, a student's evidence lines, a student's
report across a course, and the course overview. Reads only, in a constant number of queries
whatever the number of students and rooms (the page tests assert it).

The computation (an-core's analytics.services) fills StudentProgress and SessionAnalytics; its
JSON may come from older versions, so every key is read with a default. Charts are inline SVG
from analytics.charts; every number that has evidence links to the lines behind it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date, datetime
from typing import Any

from django.db.models import Avg, Count, F, Q, Sum
from django.urls import reverse
from django.utils import timezone

from analytics import charts
from analytics.confusion import GENERAL_TOPIC, signal_label
from analytics.models import SessionAnalytics, StudentProgress
from courses.exceptions import DomainError, Forbidden, NotFound
from courses.models import Course, Enrollment, Student, User
from sessions.models import LiveSession, RoomAssignment, Speaker, TranscriptSegment

BIN_MS = 5 * 60 * 1000  # timeline: lines per 5-minute bin
STUDENT_REPORT_VIEWS = ("session", "week")
ATTENTION_SHOWN = 5
TOPICS_SHOWN = 10
# Evidence keys as the computation writes them, in the order and with the names pages show.
METRICS = (
    ("turns", "Turns"),
    ("questions", "Questions asked"),
    ("explanations", "Explanations"),
    ("self_corrections", "Self-corrections"),
    ("hints", "Hints needed"),
    ("confusion", "Confusion"),
    ("topics", "Topics covered"),
)


def _name(student: Student) -> str:
    return student.user.display_name


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _seqs(value: Any) -> list[int]:
    return [int(v) for v in _list(value) if isinstance(v, int) or (isinstance(v, str) and v.isdigit())]


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _float(value: Any, default: float = 0.0) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _confusion_seqs(progress: StudentProgress) -> list[int]:
    return _seqs([_dict(point).get("seq") for point in _list(progress.confusion_points)])


def _topic_names(progress: StudentProgress) -> list[str]:
    return [str(_dict(t).get("topic")) for t in _list(progress.topics_covered) if _dict(t).get("topic")]


def progress_evidence(progress: StudentProgress) -> dict[str, list[int]]:
    """Metric -> the seqs behind it: the computation's evidence plus confusion points and topics."""
    evidence = {key: _seqs(value) for key, value in _dict(progress.evidence).items()}
    evidence["confusion"] = _confusion_seqs(progress)
    evidence["topics"] = sorted({seq for t in _list(progress.topics_covered) for seq in _seqs(_dict(t).get("segments"))})
    return evidence


# --- Access ---------------------------------------------------------------------------------------


def _scoped_sessions(user: User):
    rows = LiveSession.objects.select_related("course", "professor__user")
    if user.is_superuser and user.tenant_id is None:
        return rows
    return rows.filter(tenant_id=user.tenant_id)


def _can_teach_session(user: User, session: LiveSession) -> bool:
    if user.is_superuser or user.role == User.Role.STAFF or session.professor.user_id == user.pk:
        return True
    return user.role == User.Role.PROFESSOR and session.course.professors.filter(user_id=user.pk).exists()


def session_get_for_report(*, user: User, session_id: int) -> LiveSession:
    """The session's professor, the course's professors and the tenant's staff; students 403,
    other tenants 404 (as the session pages)."""
    session = _scoped_sessions(user).filter(pk=session_id).first()
    if session is None:
        raise NotFound("No such session.")
    if _can_teach_session(user, session):
        return session
    raise Forbidden("Only the course's professors see its session reports.")


def session_get_for_evidence(*, user: User, session_id: int, student_id: int) -> tuple[LiveSession, bool]:
    """(session, can_teach) for a student's evidence page: whoever may read the session report,
    and the student themself (their own page only; another student's is 403, as the report)."""
    session = _scoped_sessions(user).filter(pk=session_id).first()
    if session is None:
        raise NotFound("No such session.")
    if _can_teach_session(user, session):
        return session, True
    if Student.objects.filter(pk=student_id, user_id=user.pk, tenant_id=session.tenant_id).exists():
        return session, False
    raise Forbidden("You can only see your own evidence.")


def course_student_get_for_report(*, user: User, course: Course, can_teach: bool, student_id: int) -> Student:
    """A student of the course whose report the user may read: their own, or any for teachers."""
    student = (
        Student.objects.select_related("user")
        .filter(pk=student_id, tenant_id=course.tenant_id, enrollments__course=course)
        .first()
    )
    if student is None:
        raise NotFound("No such student in this course.")
    if can_teach or student.user_id == user.pk:
        return student
    raise Forbidden("You can only see your own report.")


# --- Session report -------------------------------------------------------------------------------


def _analytics(session: LiveSession) -> SessionAnalytics | None:
    return SessionAnalytics.objects.filter(session=session).first()


def report_status(*, session: LiveSession, analytics: SessionAnalytics | bool | None = False) -> dict[str, Any]:
    """The header's state: pending / computing (with progress) / ready / failed; "missing" when
    nothing was computed yet. Pass `analytics` (the row or None) when already loaded."""
    if analytics is False:
        analytics = _analytics(session)
    if analytics is None:
        return {"status": "missing", "progress": 0, "ready": False, "busy": False}
    return {
        "status": analytics.status,
        "label": analytics.get_status_display(),
        "progress": analytics.progress,
        "ready": analytics.status == SessionAnalytics.Status.READY,
        "busy": analytics.status in (SessionAnalytics.Status.PENDING, SessionAnalytics.Status.COMPUTING),
        "computed_at": analytics.computed_at,
        "version": analytics.version,
    }


def _timeline(session: LiveSession, rooms: dict[int, str]) -> dict[str, Any]:
    """Lines per 5-minute bin per room (start_ms is the offset from the session's start)."""
    rows = (
        TranscriptSegment.objects.filter(session=session, room__isnull=False)
        .annotate(bin=F("start_ms") / BIN_MS)
        .values("room_id", "bin")
        .annotate(n=Count("pk"))
        .order_by()
    )
    counts: dict[int, dict[int, int]] = defaultdict(dict)
    last = -1
    for row in rows:
        index = _int(row["bin"])
        counts[row["room_id"]][index] = row["n"]
        last = max(last, index)
    if last < 0:
        return {"chart": charts.line_chart(series=[], x_labels=[], title="Lines per 5 minutes, per room"), "bins": 0}
    labels = [f"{i * 5} min" for i in range(last + 1)]
    series = [
        charts.Series(name, [counts.get(room_id, {}).get(i, 0) for i in range(last + 1)])
        for room_id, name in rooms.items()
        if room_id in counts
    ]
    return {
        "chart": charts.line_chart(series=series, x_labels=labels, title="Lines per 5 minutes, per room"),
        "bins": last + 1,
    }


def session_report(*, session: LiveSession) -> dict[str, Any]:
    """Everything the session report shows. Six queries whatever the numbers of students, rooms
    and lines."""
    analytics = _analytics(session)
    status = report_status(session=session, analytics=analytics)
    rooms = dict(session.rooms.order_by("number").values_list("id", "name"))
    room_of = dict(RoomAssignment.objects.filter(session=session).values_list("student_id", "room_id"))
    progress = list(
        StudentProgress.objects.filter(session=session).select_related("student__user")
        .order_by("student__user__last_name", "student__user__first_name", "student__user__username")
    )

    def evidence_url(student_id: int, metric: str = "") -> str:
        url = reverse("session-report-student", args=[session.pk, student_id])
        return f"{url}#{metric}" if metric else url

    students = []
    for p in progress:
        evidence = progress_evidence(p)
        students.append({
            "id": p.student_id,
            "name": _name(p.student),
            "room": rooms.get(room_of.get(p.student_id), ""),
            "room_id": room_of.get(p.student_id),
            "turns": p.turns,
            "text_turns": p.text_turns,
            "speech_turns": p.speech_turns,
            "talk_time_s": round(p.talk_time_ms / 1000),
            "words": p.words,
            "questions": p.questions_asked,
            "hints": p.hints_needed,
            "confusion": len(_list(p.confusion_points)),
            "topics": _topic_names(p),
            "engagement": p.engagement_score,
            "url": evidence_url(p.student_id),
            "has": {key: bool(seqs) for key, seqs in evidence.items()},
        })

    participation = charts.stacked_bar_chart(
        bars=[charts.StackedBar(s["name"], [s["text_turns"], s["speech_turns"]], href=evidence_url(s["id"], "turns")) for s in students],
        part_names=["Text turns", "Speech turns"], title="Turns per student (text and speech)",
    )
    by_engagement = sorted(students, key=lambda s: (-s["engagement"], s["name"]))
    engagement = charts.bar_chart(
        bars=[charts.Bar(s["name"], s["engagement"], href=evidence_url(s["id"])) for s in by_engagement],
        title="Engagement per student (0-100)", max_value=100,
    )

    confusion_topics = []
    for row in _list(analytics.confusion_topics if analytics else []):
        row = _dict(row)
        topic = str(row.get("topic") or "")
        if not topic:
            continue
        seqs = _seqs(row.get("seqs"))
        confusion_topics.append({
            "topic": topic,
            "count": _int(row.get("count"), len(seqs)),
            "rooms": [str(rooms.get(r, r)) for r in _list(row.get("rooms"))],  # room ids (or names)
            "seqs": seqs,
            "url": reverse("session-report-lines", args=[session.pk]) + "?" + _query(topic=topic),
        })
    confusion_topics.sort(key=lambda t: (-t["count"], t["topic"]))
    confusion_chart = charts.bar_chart(
        bars=[charts.Bar(t["topic"], t["count"], href=t["url"]) for t in confusion_topics[:TOPICS_SHOWN]],
        title="Confusion signals per topic",
    )

    room_rows = []
    for row in _list(analytics.room_comparison if analytics else []):
        row = _dict(row)
        room_id = row.get("room_id")
        room_rows.append({
            "id": room_id,
            "name": str(row.get("name") or rooms.get(room_id) or f"Room {room_id}"),
            "students": _int(row.get("students")),
            "turns": _int(row.get("turns")),
            "words": _int(row.get("words")),
            "talk_time_s": round(_int(row.get("talk_time_ms")) / 1000),
            "confusion": _int(row.get("confusion", row.get("confusion_count"))),
            "engagement_avg": round(_float(row.get("engagement_avg")), 1),
            "url": reverse("room-detail", args=[room_id]) if room_id in rooms else "",
        })
    rooms_chart = charts.bar_chart(
        bars=[charts.Bar(r["name"], r["engagement_avg"], href=r["url"]) for r in room_rows],
        title="Average engagement per room (0-100)", max_value=100,
    )

    return {
        "status": status,
        "summary": analytics.summary if analytics else "",
        "summary_offline": bool(analytics and analytics.summary_offline),
        "participation": _participation(_dict(analytics.participation if analytics else {})),
        "students": students,
        "rooms": room_rows,
        "confusion_topics": confusion_topics,
        "charts": {
            "participation": participation,
            "engagement": engagement,
            "confusion": confusion_chart,
            "rooms": rooms_chart,
            "timeline": _timeline(session, rooms)["chart"],
        },
        "totals": {
            "students": len(students),
            "turns": sum(s["turns"] for s in students),
            "questions": sum(s["questions"] for s in students),
            "engagement_avg": round(sum(s["engagement"] for s in students) / len(students), 1) if students else None,
        },
    }


def _participation(data: dict[str, Any]) -> dict[str, Any]:
    """The distribution's headline figures, where the computation gave them."""
    share = data.get("top_quarter_share")
    gini = data.get("gini")
    return {
        "top_quarter_pct": round(_float(share) * 100) if isinstance(share, int | float) else None,
        "gini": round(_float(gini), 2) if isinstance(gini, int | float) else None,
        "silent": _int(data.get("silent")) if "silent" in data else None,
        "provisional": data.get("final") is False,
    }


def _query(**params: str) -> str:
    from urllib.parse import urlencode

    return urlencode(params)


def _line_rows(
    session: LiveSession, seqs: set[int], *, exclude_students_but: int | None = None,
    room_links: set[int] | None = None,
) -> dict[int, dict[str, Any]]:
    """seq -> the line (one query), with the room's name and a wall-clock time.
    `exclude_students_but` (a user id): no other student's line is returned; `room_links`: only
    these rooms are linked (default: all)."""
    if not seqs:
        return {}
    rows = (
        TranscriptSegment.objects.filter(session=session, seq__in=seqs)
        .select_related("room").order_by("seq")
    )
    if exclude_students_but is not None:
        rows = rows.exclude(Q(speaker_kind=Speaker.STUDENT) & ~Q(speaker_user_id=exclude_students_but))
    return {
        s.seq: {
            "seq": s.seq,
            "room": s.room.name if s.room else "Main room",
            "room_url": (
                f"{reverse('room-detail', args=[s.room_id])}#seq-{s.seq}"
                if s.room_id and (room_links is None or s.room_id in room_links) else ""
            ),
            "speaker": s.speaker_name,
            "source": s.source,
            "offset": f"{s.start_ms // 60000}:{(s.start_ms // 1000) % 60:02d}",
            "created_at": s.created_at,
            "text": s.text,
        }
        for s in rows
    }


def student_evidence(*, session: LiveSession, student_id: int, own: bool = False) -> dict[str, Any]:
    """One student's numbers in a session with the lines behind each, grouped by metric.

    `own`: the student reads their own page. Their lines and the tutor's (its hints to them, its
    questions) are listed, never another student's line (the computation's evidence points at
    none, but its JSON is not trusted for that), and only their own room is linked."""
    student = Student.objects.select_related("user").filter(pk=student_id, tenant_id=session.tenant_id).first()
    if student is None:
        raise NotFound("No such student.")
    progress = StudentProgress.objects.filter(session=session, student=student).first()
    room_ids = set(RoomAssignment.objects.filter(session=session, student=student).values_list("room_id", flat=True))
    if progress is None and not room_ids:
        raise NotFound("This student was not in the session.")
    evidence = progress_evidence(progress) if progress else {}
    wanted = {seq for seqs in evidence.values() for seq in seqs}
    if own:
        lines = _line_rows(session, wanted, exclude_students_but=student.user_id, room_links=room_ids)
        absent = wanted - set(lines)
        hidden = set(
            TranscriptSegment.objects.filter(session=session, seq__in=absent).values_list("seq", flat=True)
        ) if absent else set()
    else:
        lines, hidden = _line_rows(session, wanted), set()
    # A line's confusion points (a line may carry several signals), shown under it, labelled.
    notes: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for point in _list(progress.confusion_points if progress else []):
        point = _dict(point)
        notes[_int(point.get("seq"))].append({**point, "signal_label": signal_label(point.get("signal"))})
    known = dict(METRICS)
    groups = []
    for key in [k for k, _ in METRICS] + sorted(k for k in evidence if k not in known):
        seqs = evidence.get(key, [])
        distinct = list(dict.fromkeys(seqs))
        shown = [lines[seq] for seq in distinct if seq in lines]
        if key == "confusion":
            shown = [{**line, "notes": notes.get(line["seq"], [])} for line in shown]
        groups.append({
            "key": key,
            "label": known.get(key, key.replace("_", " ").capitalize()),
            "count": len(seqs),
            "lines": shown,
            "missing": [seq for seq in distinct if seq not in lines and seq not in hidden],
            "hidden": sum(1 for seq in distinct if seq in hidden),
        })
    return {
        "own": own,
        "student": {"id": student.pk, "name": _name(student)},
        "progress": progress,
        "groups": groups,
        "topics": [
            {"topic": str(_dict(t).get("topic")), "seqs": _seqs(_dict(t).get("segments"))}
            for t in _list(progress.topics_covered if progress else []) if _dict(t).get("topic")
        ],
    }


def topic_lines(*, session: LiveSession, topic: str) -> dict[str, Any]:
    """The lines behind one confusion topic of the session."""
    analytics = _analytics(session)
    row = next(
        (_dict(r) for r in _list(analytics.confusion_topics if analytics else []) if _dict(r).get("topic") == topic),
        None,
    )
    if row is None:
        raise NotFound("No such confusion topic in this session's analytics.")
    seqs = _seqs(row.get("seqs"))
    lines = _line_rows(session, set(seqs))
    # Each line's signals on this topic, labelled (one query: the session's confusion points).
    notes: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for points in StudentProgress.objects.filter(session=session).values_list("confusion_points", flat=True):
        for point in map(_dict, _list(points)):
            seq = _int(point.get("seq"), -1)
            if seq in lines and point.get("topic") == topic:
                notes[seq].append({**point, "signal_label": signal_label(point.get("signal"))})
    return {
        "topic": topic,
        "count": _int(row.get("count"), len(seqs)),
        "lines": [{**lines[s], "notes": notes.get(s, [])} for s in dict.fromkeys(seqs) if s in lines],
    }


# --- Student report across a course ---------------------------------------------------------------


def _session_day(session: LiveSession) -> date:
    moment: datetime = session.started_at or session.scheduled_for or session.created_at
    return timezone.localdate(moment) if timezone.is_aware(moment) else moment.date()


def student_report(*, course: Course, student: Student, by: str = "session") -> dict[str, Any]:
    """A student's engagement, turns, questions and confusion over the course's sessions (or by
    week), and topics covered so far against the course scope. Two queries."""
    if by not in STUDENT_REPORT_VIEWS:
        raise DomainError(f"View by one of: {', '.join(STUDENT_REPORT_VIEWS)}.", code="invalid_view")
    rows = list(
        StudentProgress.objects.filter(student=student, session__course=course)
        .select_related("session")
        .order_by("session__started_at", "session__created_at", "session_id")
    )
    points = []
    for p in rows:
        day = _session_day(p.session)
        points.append({
            "session": p.session, "day": day, "engagement": p.engagement_score, "turns": p.turns,
            "questions": p.questions_asked, "confusion": len(_list(p.confusion_points)),
            "url": reverse("session-report-student", args=[p.session_id, student.pk]),
        })
    if by == "week":
        weeks: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
        for point in points:
            weeks[tuple(point["day"].isocalendar()[:2])].append(point)
        buckets = [
            {
                "label": f"{year} W{week:02d}",
                "engagement": round(sum(p["engagement"] for p in group) / len(group), 1),
                "turns": sum(p["turns"] for p in group),
                "questions": sum(p["questions"] for p in group),
                "confusion": sum(p["confusion"] for p in group),
            }
            for (year, week), group in sorted(weeks.items())
        ]
    else:
        buckets = [
            {"label": f"{p['day']:%b %d}", **{k: p[k] for k in ("engagement", "turns", "questions", "confusion")}}
            for p in points
        ]
    labels = [b["label"] for b in buckets]
    unit = "week" if by == "week" else "session"
    engagement_chart = charts.line_chart(
        series=[charts.Series("Engagement", [b["engagement"] for b in buckets])],
        x_labels=labels, title=f"Engagement per {unit} (0-100)", max_value=100,
    )
    activity_chart = charts.line_chart(
        series=[
            charts.Series("Turns", [b["turns"] for b in buckets]),
            charts.Series("Questions", [b["questions"] for b in buckets]),
            charts.Series("Confusion", [b["confusion"] for b in buckets]),
        ],
        x_labels=labels, title=f"Turns, questions and confusion per {unit}",
    )
    covered: Counter[str] = Counter()
    for p in rows:
        for topic in _topic_names(p):
            covered[topic] += 1
    scope = [str(t) for t in _list(course.scope_terms)]
    scope_lower = {t.lower() for t in scope}
    covered_lower = {t.lower() for t in covered}
    return {
        "student": {"id": student.pk, "name": _name(student)},
        "by": by,
        "points": points,
        "buckets": buckets,
        "charts": {"engagement": engagement_chart, "activity": activity_chart},
        "scope": [{"topic": t, "covered": t.lower() in covered_lower} for t in scope],
        "scope_covered": sum(1 for t in scope if t.lower() in covered_lower),
        "other_topics": sorted(t for t in covered if t.lower() not in scope_lower and t.lower() != GENERAL_TOPIC),
    }


# --- Course overview ------------------------------------------------------------------------------


def course_overview(*, course: Course) -> dict[str, Any]:
    """Sessions with participation and average engagement, engagement per session, top confusion
    topics across the course, and the students needing attention. Five queries."""
    sessions = list(
        LiveSession.objects.filter(course=course)
        .select_related("analytics")
        .annotate(
            students_total=Count("progress", distinct=True),
            engagement_avg=Avg("progress__engagement_score"),
            turns_total=Sum(F("progress__speech_turns") + F("progress__text_turns")),
            questions_total=Sum("progress__questions_asked"),
        )
        .order_by("started_at", "created_at", "pk")
    )
    rows = []
    topics: Counter[str] = Counter()
    topic_sessions: dict[str, set[int]] = defaultdict(set)
    for s in sessions:
        analytics = getattr(s, "analytics", None) if _has_analytics(s) else None
        for row in _list(analytics.confusion_topics if analytics else []):
            row = _dict(row)
            if row.get("topic") and _int(row.get("count"), 1) > 0:
                topics[str(row["topic"])] += _int(row.get("count"), 1)
                topic_sessions[str(row["topic"])].add(s.pk)
        rows.append({
            "session": s,
            "day": _session_day(s),
            "students": s.students_total,
            "turns": s.turns_total or 0,
            "questions": s.questions_total or 0,
            "engagement_avg": round(s.engagement_avg, 1) if s.engagement_avg is not None else None,
            "analytics_status": analytics.status if analytics else "missing",
            "url": reverse("session-report", args=[s.pk]),
        })
    with_data = [r for r in rows if r["engagement_avg"] is not None]
    engagement_chart = charts.bar_chart(
        bars=[charts.Bar(f"{r['day']:%b %d} {r['session'].title}", r["engagement_avg"], href=r["url"]) for r in with_data],
        title="Average engagement per session (0-100)", max_value=100,
    )
    top_topics = [{"topic": t, "count": n, "sessions": len(topic_sessions[t])} for t, n in topics.most_common(TOPICS_SHOWN)]
    topics_chart = charts.bar_chart(
        bars=[charts.Bar(t["topic"], t["count"]) for t in top_topics], title="Top confusion topics across the course",
    )

    per_student: dict[int, dict[str, Any]] = {}
    progress_rows = StudentProgress.objects.filter(session__course=course).values_list(
        "student_id", "engagement_score", "confusion_points"
    )
    for student_id, score, confusion in progress_rows:
        entry = per_student.setdefault(student_id, {"sessions": 0, "engagement": 0, "confusion": 0})
        entry["sessions"] += 1
        entry["engagement"] += score
        entry["confusion"] += len(_list(confusion))
    names = {
        s.pk: _name(s)
        for s in Student.objects.filter(pk__in=per_student).select_related("user")
    }
    students = [
        {
            "id": sid, "name": names.get(sid, f"Student {sid}"), "sessions": e["sessions"],
            "engagement_avg": round(e["engagement"] / e["sessions"], 1), "confusion": e["confusion"],
            "url": reverse("student-report", args=[course.pk, sid]),
        }
        for sid, e in per_student.items()
    ]
    lowest = sorted(students, key=lambda s: (s["engagement_avg"], -s["confusion"], s["name"]))[:ATTENTION_SHOWN]
    confused = sorted((s for s in students if s["confusion"]), key=lambda s: (-s["confusion"], s["name"]))[:ATTENTION_SHOWN]
    return {
        "sessions": rows,
        "charts": {"engagement": engagement_chart, "topics": topics_chart},
        "top_topics": top_topics,
        "lowest_engagement": lowest,
        "most_confusion": confused,
        "student_total": len(students),
        "enrolled": Enrollment.objects.filter(course=course, status=Enrollment.Status.ACTIVE).count(),
    }


def _has_analytics(session: LiveSession) -> bool:
    try:
        session.analytics  # noqa: B018 (select_related filled it, or raises)
    except SessionAnalytics.DoesNotExist:
        return False
    return True
