"""Reads of the sessions app, with the access rules in one place for portal, API and consumers.

Every `*_get_for_*` selector raises `courses.exceptions` errors the three surfaces map the same
way: Unauthenticated (401 / close 4401), NotFound (404 / 4404: no such object *in your tenant*,
so another tenant's ids reveal nothing) and Forbidden (403 / 4403: it exists, it is not yours).
"""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet

from courses.exceptions import Forbidden, NotFound, Unauthenticated
from courses.models import Tenant, User
from sessions.models import BreakoutRoom, LiveSession, RoomAssignment


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
