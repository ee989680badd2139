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
from sessions.models import BreakoutRoom, Conversation, LiveSession, Message, RoomAssignment


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


def session_status_for_monitor(*, session: LiveSession) -> dict[str, Any]:
    """The monitor's opening snapshot: the session and its rooms with their students.

    Two queries whatever the number of rooms and students.
    """
    rooms = session.rooms.order_by("number").prefetch_related(
        Prefetch("assignments", queryset=_assignments_with_students())
    )
    return {
        "id": session.id,
        "title": session.title,
        "status": session.status,
        "teaching_mode": session.teaching_mode,
        "rooms": [
            {
                "id": room.id,
                "name": room.name,
                "number": room.number,
                "status": room.status,
                "students": [_student_row(a.student) for a in room.assignments.all()],
            }
            for room in rooms
        ],
    }


# --- Rooms ----------------------------------------------------------------------------------


def room_get_for_participant(*, user: User, room_id: int) -> BreakoutRoom:
    """A room the user may join: a student assigned to it, or the session's professor."""
    _require_login(user)
    room = (
        _tenant_scope(
            BreakoutRoom.objects.select_related("session__professor"), user, "session__tenant_id"
        )
        .filter(pk=room_id)
        .first()
    )
    if room is None:
        raise NotFound("No such room.")
    if room.session.professor.user_id == user.id:
        return room
    if RoomAssignment.objects.filter(room_id=room.id, student__user_id=user.id).exists():
        return room
    raise Forbidden("You are not assigned to this room.")


def room_status(*, room: BreakoutRoom) -> dict[str, Any]:
    """A room as its participants see it on connect. One query (its students)."""
    return {
        "id": room.id,
        "name": room.name,
        "topic": room.topic,
        "session_id": room.session_id,
        "students": [
            _student_row(a.student) for a in _assignments_with_students().filter(room_id=room.id)
        ],
    }


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
                "source": "text",
                "start_ms": 0,
                "end_ms": 0,
                "provider": "",
                "guardrail": message.guardrail or None,
            },
        }
    data: dict[str, Any] = {
        "message_id": message.pk,
        "conversation_id": conversation.pk,
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
    return {"event_type": "tutor.message", "seq": message.seq, "data": data}


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
