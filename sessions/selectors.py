"""Reads of the sessions app, with the access rules in one place for portal, API and consumers.

Every `*_get_for_*` selector raises `courses.exceptions` errors the three surfaces map the same
way: Unauthenticated (401 / close 4401), NotFound (404 / 4404: no such object *in your tenant*,
so another tenant's ids reveal nothing) and Forbidden (403 / 4403: it exists, it is not yours).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.apps import apps
from django.db.models import Count, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.utils import timezone

from courses.exceptions import Forbidden, NotFound, Unauthenticated
from courses.models import Student, Tenant, User
from sessions.models import (
    BreakoutRoom,
    Conversation,
    LiveSession,
    Message,
    RoomAssignment,
    TranscriptSegment,
)


def _require_login(user: Any) -> None:
    if user is None or not user.is_authenticated:
        raise Unauthenticated("Log in first.")


def _tenant_scope(qs: QuerySet, user: User, field: str = "tenant_id") -> QuerySet:
    # A superuser without a tenant is the operator and sees every tenant.
    if user.is_superuser and user.tenant_id is None:
        return qs
    return qs.filter(**{field: user.tenant_id})


def _student_row(student) -> dict[str, Any]:
    return {"id": student.id, "name": student.user.display_name}


def _assignments_with_students() -> QuerySet[RoomAssignment]:
    return RoomAssignment.objects.select_related("student__user").order_by(
        "student__user__last_name", "student__user__first_name", "student__user__username"
    )


# --- Monitor --------------------------------------------------------------------------------


def user_can_monitor(*, user: User, session: LiveSession) -> bool:
    """The session's professor, staff of its tenant, and the operator may watch every room."""
    if user.is_superuser:
        return True
    if user.role == User.Role.STAFF and user.tenant_id == session.tenant_id:
        return True
    return session.professor.user_id == user.id


def session_get_for_monitor(*, user: User, session_id: int) -> LiveSession:
    """A session the user may monitor, or Unauthenticated / NotFound / Forbidden."""
    _require_login(user)
    session = (
        _tenant_scope(LiveSession.objects.select_related("professor"), user)
        .filter(pk=session_id)
        .first()
    )
    if session is None:
        raise NotFound("No such session.")
    if not user_can_monitor(user=user, session=session):
        raise Forbidden("Only the session's professor can monitor it.")
    return session


def _room_row(room: BreakoutRoom, session: LiveSession, students: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": room.id,
        "session_id": room.session_id,
        "name": room.name,
        "number": room.number,
        "topic": room.topic,
        "goal": room.goal,
        "status": room.status,
        "teaching_mode": room.teaching_mode or session.teaching_mode,
        "tutor_status": room.tutor_status,
        "tutor_error": room.tutor_error,
        "last_activity_at": room.last_activity_at,
        "students": students,
    }


def session_status_for_monitor(*, session: LiveSession) -> dict[str, Any]:
    """`session.status`: the session and its rooms with their students (the monitor's opening
    snapshot, also sent to rooms when the session changes). Two queries whatever the size."""
    rooms = session.rooms.order_by("number").prefetch_related(
        Prefetch("assignments", queryset=_assignments_with_students())
    )
    return {
        "id": session.id,
        "title": session.title,
        "status": session.status,
        "teaching_mode": session.teaching_mode,
        "hint": session.tutor_hint,
        "degraded": session.degraded or {},
        "last_seq": session.last_seq,
        "started_at": session.started_at,
        "ended_at": session.ended_at,
        "rooms": [
            _room_row(room, session, [_student_row(a.student) for a in room.assignments.all()])
            for room in rooms
        ],
    }


# --- Rooms ----------------------------------------------------------------------------------


def room_get_for_participant(*, user: User, room_id: int) -> BreakoutRoom:
    """A room the user may join: a student assigned to it, or whoever may monitor the session
    (its professor, the tenant's staff). NotFound outside the tenant, Forbidden otherwise."""
    _require_login(user)
    room = (
        _tenant_scope(
            BreakoutRoom.objects.select_related("session__professor", "session__course"), user, "session__tenant_id"
        )
        .filter(pk=room_id)
        .first()
    )
    if room is None:
        raise NotFound("No such room.")
    if user_can_monitor(user=user, session=room.session):
        return room
    if RoomAssignment.objects.filter(room_id=room.id, student__user_id=user.id).exists():
        return room
    raise Forbidden("You are not assigned to this room.")


def room_get_for_speaker(*, user: User, room_id: int) -> BreakoutRoom:
    """A room the user may talk in: only its assigned students (the professor broadcasts from
    the monitor). Read again for every line: the session may have ended, the student moved."""
    _require_login(user)
    room = (
        _tenant_scope(BreakoutRoom.objects.select_related("session"), user, "session__tenant_id")
        .filter(pk=room_id)
        .first()
    )
    if room is None:
        raise NotFound("No such room.")
    if not RoomAssignment.objects.filter(room_id=room.id, student__user_id=user.id).exists():
        raise Forbidden("Only the room's students talk to its tutor; use the monitor to broadcast.")
    return room


def room_status_many(*, room_ids: list[int]) -> list[dict[str, Any]]:
    """`room.status` of several rooms: two queries whatever their number."""
    rooms = (
        BreakoutRoom.objects.filter(pk__in=room_ids)
        .select_related("session")
        .prefetch_related(Prefetch("assignments", queryset=_assignments_with_students()))
        .order_by("number")
    )
    return [
        {
            **_room_row(room, room.session, [_student_row(a.student) for a in room.assignments.all()]),
            "session_status": room.session.status,
            "session_title": room.session.title,
            "last_seq": room.session.last_seq,
        }
        for room in rooms
    ]


def room_status(*, room: BreakoutRoom) -> dict[str, Any]:
    """A room as its participants see it on connect."""
    return room_status_many(room_ids=[room.id])[0]


def segments_after(*, session_id: int, room_id: int | None = None, after_seq: int = 0, limit: int | None = None) -> QuerySet[TranscriptSegment]:
    """Persisted lines of a session (or of one room) after `after_seq`, in seq order, with the
    tutor lines' messages: one query."""
    rows = TranscriptSegment.objects.filter(session_id=session_id, seq__gt=after_seq)
    if room_id is not None:
        rows = rows.filter(room_id=room_id)
    rows = rows.select_related("message").order_by("seq")
    return rows[:limit] if limit else rows


def segment_events_after(*, session_id: int, room_id: int | None = None, after_seq: int = 0) -> list[dict[str, Any]]:
    """The replay of a reconnecting socket: every persisted event after `after_seq`."""
    from sessions.live import segment_event

    return [segment_event(segment) for segment in segments_after(session_id=session_id, room_id=room_id, after_seq=after_seq)]


# --- Sessions: the professor's pages and API ---------------------------------------------------


def session_get_for_professor(*, user: User, session_id: int) -> LiveSession:
    """A session the user may run (build, start, steer, end): its professor or the tenant's staff."""
    return session_get_for_monitor(user=user, session_id=session_id)


def sessions_for_course(*, course_id: int) -> QuerySet[LiveSession]:
    return (
        LiveSession.objects.filter(course_id=course_id)
        .select_related("professor__user")
        .annotate(rooms_total=Count("rooms", distinct=True), students_total=Count("assignments", distinct=True))
        .order_by("-created_at")
    )


def sessions_visible_to(*, user: User) -> QuerySet[LiveSession]:
    """Sessions the user may see: a student those of their courses; a professor theirs; staff
    every session of the tenant."""
    _require_login(user)
    rows = _tenant_scope(LiveSession.objects.select_related("course", "professor__user"), user)
    if user.is_superuser or user.role == User.Role.STAFF:
        return rows
    if user.role == User.Role.PROFESSOR:
        return rows.filter(professor__user_id=user.pk)
    return rows.filter(course__enrollments__student__user_id=user.pk, course__enrollments__status="active").distinct()


def student_rooms(*, user: User, session_ids: list[int]) -> dict[int, BreakoutRoom]:
    """{session id: the user's room} for the given sessions (one query)."""
    rows = RoomAssignment.objects.filter(session_id__in=session_ids, student__user_id=user.pk).select_related("room")
    return {a.session_id: a.room for a in rows}


def monitor_page(*, session: LiveSession) -> dict[str, Any]:
    """Everything the monitor page renders: the snapshot, each room's latest lines, and each
    room's alert count (failed or off-topic tutor replies). Four queries whatever the number of
    rooms and students."""
    from django.db.models import F, Window
    from django.db.models.functions import RowNumber

    from sessions.live import monitor_lines_per_room, segment_event

    status = session_status_for_monitor(session=session)
    latest = (
        TranscriptSegment.objects.filter(session_id=session.pk, room__isnull=False)
        .select_related("message")
        .annotate(row=Window(RowNumber(), partition_by=[F("room_id")], order_by=F("seq").desc()))
        .filter(row__lte=monitor_lines_per_room())
        .order_by("seq")
    )
    lines: dict[int, list[dict[str, Any]]] = {}
    for segment in latest:
        lines.setdefault(segment.room_id, []).append(segment_event(segment))
    alerts = dict(
        Message.objects.filter(conversation__room__session_id=session.pk)
        .filter(Q(status=Message.Status.FAILED) | Q(guardrail=Message.Guardrail.OFF_TOPIC))
        .values("conversation__room_id")
        .annotate(n=Count("pk"))
        .values_list("conversation__room_id", "n")
    )
    for room in status["rooms"]:
        room["lines"] = lines.get(room["id"], [])
        room["alerts"] = alerts.get(room["id"], 0) + (1 if room["tutor_status"] == "failed" else 0)
    return status


# --- Tenant ---------------------------------------------------------------------------------


def tenant_get_for_member(*, user: User) -> Tenant:
    """The user's own tenant, for its broadcast channel; Forbidden without an active one."""
    _require_login(user)
    tenant = Tenant.objects.filter(pk=user.tenant_id, is_active=True).first() if user.tenant_id else None
    if tenant is None:
        raise Forbidden("You belong to no active institution.")
    return tenant


# --- Practice conversations ---------------------------------------------------------------------


def conversation_get_for_student(*, user: User, conversation_id: int) -> Conversation:
    """A practice conversation of the user's own: NotFound outside the tenant (or no such id),
    Forbidden for anybody but its student (other students, professors, staff)."""
    _require_login(user)
    conversation = (
        _tenant_scope(
            Conversation.objects.select_related("course", "student__user", "persona"), user
        )
        .filter(pk=conversation_id, room__isnull=True)
        .first()
    )
    if conversation is None:
        raise NotFound("No such conversation.")
    if conversation.student is None or conversation.student.user_id != user.pk:
        raise Forbidden("Only the student of this conversation can open it.")
    return conversation


def student_for_user(*, user: User) -> Student:
    """The user's student profile; Forbidden for other roles (practice is for students)."""
    _require_login(user)
    student = Student.objects.filter(user_id=user.pk).first() if user.role == User.Role.STUDENT else None
    if student is None:
        raise Forbidden("Practice conversations are for students of the course.")
    return student


def conversation_list_for_student(
    *, student: Student, course_id: int | None = None, mode: str | None = None
) -> QuerySet[Conversation]:
    """The student's practice conversations, newest activity first, with `message_count` and
    `preview` (the latest message's text) annotated: one query however many there are."""
    latest = Message.objects.filter(conversation=OuterRef("pk"), seq__isnull=False).order_by("-seq")
    rows = Conversation.objects.filter(student=student, room__isnull=True)
    if course_id is not None:
        rows = rows.filter(course_id=course_id)
    if mode:
        rows = rows.filter(mode=mode)
    return (
        rows.select_related("course")
        .annotate(
            message_count=Count("messages", filter=Q(messages__seq__isnull=False)),
            preview=Subquery(latest.values("text")[:1]),
        )
        .order_by("-updated_at", "-pk")
    )


def conversation_messages(*, conversation: Conversation, after_seq: int | None = None) -> QuerySet[Message]:
    """Persisted messages in `seq` order (replies still streaming have none and are left out)."""
    rows = conversation.messages.filter(seq__isnull=False)
    if after_seq is not None:
        rows = rows.filter(seq__gt=after_seq)
    return rows.select_related("author").order_by("seq")


def conversation_generating(*, conversation_id: int) -> int | None:
    """The id of the reply being streamed right now, if any."""
    return (
        Message.objects.filter(conversation_id=conversation_id, status=Message.Status.STREAMING)
        .order_by("-pk")
        .values_list("pk", flat=True)
        .first()
    )


def conversation_status(*, conversation: Conversation) -> dict[str, Any]:
    """`conversation.status`, sent on connect."""
    generating = conversation_generating(conversation_id=conversation.pk)
    return {
        "id": conversation.pk,
        "title": conversation.title,
        "mode": conversation.mode,
        "course_id": conversation.course_id,
        "last_seq": conversation.last_seq,
        "generating": {"message_id": generating} if generating else None,
    }


def message_event(message: Message, *, conversation: Conversation, author_name: str | None = None) -> dict[str, Any]:
    """The persisted event a message is on the wire: a student's line is `transcript.final`,
    a tutor reply `tutor.message`. Returns {event_type, data, seq} for broadcast/replay."""
    if message.role == Message.Role.STUDENT:
        if author_name is None:
            author_name = message.author.display_name if message.author_id else "Student"
        return {
            "event_type": "transcript.final",
            "seq": message.seq,
            "data": {
                "segment_id": message.pk,  # a conversation's lines are its messages
                "message_id": message.pk,
                "conversation_id": conversation.pk,
                "room_id": None,
                "speaker": {"id": message.author_id, "name": author_name, "kind": "student"},
                "text": message.text,
                "source": message.source,
                "start_ms": 0,
                "end_ms": 0,
                "provider": message.provider,
                "guardrail": message.guardrail or None,
            },
        }
    data = {**tutor_message_data(message), "conversation_id": conversation.pk}
    return {"event_type": "tutor.message", "seq": message.seq, "data": data}


def tutor_message_data(message: Message) -> dict[str, Any]:
    """The tutor's side of a `tutor.message` payload, in a conversation or a breakout room."""
    data: dict[str, Any] = {
        "message_id": message.pk,
        "text": message.text,
        "citations": message.citations,
        "guardrail": message.guardrail or "on_topic",
        "model": message.model,
        "offline": message.offline,
        "status": message.status,
    }
    if message.status == Message.Status.FAILED:
        data["error"] = {"code": "tutor_unavailable", "message": TUTOR_UNAVAILABLE_MESSAGE}
    if message.notice:
        data["notice"] = message.notice
    return data


TUTOR_UNAVAILABLE_MESSAGE = "The tutor is unavailable right now; your message is saved. Try again in a moment."


# --- Tutor status (the professor's view of the model chain) --------------------------------------

RECENT_FAILURES_SHOWN = 10
RECENT_FAILURES_HOURS = 24


def _chain_rows(chain: list) -> list[dict[str, Any]]:
    """Each chain entry (`ModelSpec`) with its state for people: ready, missing, open, half_open."""
    from sessions.tutor.breaker import breaker_state

    rows = []
    for spec in chain:
        if spec.missing:
            state, reason = "missing", spec.missing
        else:
            state = breaker_state(spec.breaker_key)
            reason = {
                "open": "Failing repeatedly: skipped until its cool-down ends.",
                "half_open": "Recovering: the next call is a trial.",
            }.get(state, "")
            state = "ready" if state == "closed" else state
        rows.append(
            {"label": spec.label, "provider": spec.provider, "model_name": spec.model_name, "state": state, "reason": reason}
        )
    return rows


def _offline_only(rows: list[dict[str, Any]]) -> bool:
    online_ready = any(r["provider"] != "offline" and r["state"] in ("ready", "half_open") for r in rows)
    return not online_ready and any(r["provider"] == "offline" for r in rows)


def tutor_offline_only(*, tenant_id: int) -> bool:
    """Whether only the offline tutor can answer now (no online model configured or working)."""
    from sessions.tutor.chain import chain_for_tenant

    return _offline_only(_chain_rows(chain_for_tenant(tenant_id=tenant_id)))


def tutor_status_for_course(*, course) -> dict[str, Any]:
    """The tutor status card: the chain with each entry's state, the tenant's budget, and the
    latest failed model calls (a constant number of queries)."""
    from courses.usage import tenant_month_spend
    from sessions.tutor.chain import chain_apply_budget, chain_for_tenant

    tenant = course.tenant
    specs = chain_for_tenant(tenant_id=tenant.pk)
    chain = _chain_rows(specs)
    budget = None
    if tenant.monthly_budget is not None:
        spent = tenant_month_spend(tenant.pk)
        _, notice = chain_apply_budget(chain=specs, tenant=tenant, spent=spent)
        budget = {"limit": tenant.monthly_budget, "spent": spent, "over": bool(notice), "notice": notice}
    usage_event = apps.get_model("analytics", "UsageEvent")
    since = timezone.now() - timedelta(hours=RECENT_FAILURES_HOURS)
    failures = list(
        usage_event.objects.filter(tenant_id=tenant.pk, kind="llm", created_at__gte=since)
        .exclude(outcome="ok")
        .order_by("-created_at")
        .values("created_at", "model", "outcome", "error")[:RECENT_FAILURES_SHOWN]
    )
    return {
        "course": course,
        "chain": chain,
        "budget": budget,
        "recent_failures": failures,
        "offline_only": _offline_only(chain),
    }


def session_get_for_lecturer(*, user: User, session_id: int) -> LiveSession:
    """A session whose lecture the user may speak: its professor, or a professor of its course.
    NotFound outside the tenant, Forbidden for everybody else (students, staff)."""
    _require_login(user)
    session = (
        _tenant_scope(LiveSession.objects.select_related("professor", "course__tenant"), user)
        .filter(pk=session_id)
        .first()
    )
    if session is None:
        raise NotFound("No such session.")
    if session.professor.user_id == user.id or session.course.professors.filter(user_id=user.id).exists():
        return session
    raise Forbidden("Only the session's professor gives its lecture.")


def lecture_lines(*, session_id: int, up_to_seq: int, limit: int) -> list[dict[str, Any]]:
    """The session's latest lecture lines (main room) up to `up_to_seq`, oldest first, as the
    `transcript.final` data the monitor's socket sends: one query."""
    from sessions.live import segment_event

    segments = list(
        TranscriptSegment.objects.filter(session_id=session_id, room__isnull=True, seq__lte=up_to_seq)
        .order_by("-seq")[: max(0, limit)]
    )
    return [{**segment_event(s)["data"], "created_at": s.created_at} for s in reversed(segments)]
