"""A live session's life: build it (rooms, assignments), start it, steer who sits where, end it.

    session = session_create(course=..., professor=..., title="Loops lab", room_count=4)
    result = session_start(session=session, by=user)   # -> StartResult (counts, degraded)
    assignment_move(session=session, student=s, room=r, by=user)
    session_end(session=session, by=user)

`session_start` follows DESIGN.md "Sessions: orchestration", in order:

1. hard checks: an active professor, at least one student (DomainError, nothing written);
2. the meeting: built-in rooms need nothing (a Zoom provider would create its meeting here);
3. rooms and assignments in one transaction (students enrolled since the session was built are
   placed in the emptiest rooms), status `live`;
4. each room's tutor started in parallel (`ROOM_TUTOR_STARTER`, a dotted path setting): a
   failure is *soft*, recorded on the room and in `session.degraded`, and the session goes on;
5. transcription (text captions always; speech engines come with the voice app): soft as well;
6. the counts of what worked.

Everything lives in the database, so a restarted server rebuilds the session from its rows and
clients reconnect with `?after_seq=`. A second `session_start` of a live session changes nothing
and answers the same counts; starting an ended session is a Conflict.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from courses.exceptions import Conflict, DomainError
from courses.models import Course, Enrollment, Professor, Student, TeachingMode, User
from sessions import groups
from sessions.models import AvatarPersona, BreakoutRoom, Conversation, LiveSession, RoomAssignment
from sessions.realtime import control_on_commit

logger = logging.getLogger(__name__)

MAX_ROOMS = 100
TITLE_MAX_CHARS = 200
TOPIC_MAX_CHARS = 300
GOAL_MAX_CHARS = 2000
# Close code of a room socket whose student was moved to another room (a `room.moved` event
# with the new room precedes it), and of every socket of a session that ended.
CLOSE_MOVED = 4409
CLOSE_SESSION_ENDED = 4000
SESSION_MODES = (TeachingMode.SOCRATIC, TeachingMode.TEACHER, TeachingMode.QA, TeachingMode.QUIZ_LOCK)


def _invalid(field_name: str, message: str) -> DomainError:
    return DomainError(message, code="invalid", fields={field_name: [message]})


def session_mode_clean(mode: Any) -> str:
    if mode not in SESSION_MODES:
        allowed = ", ".join(SESSION_MODES)
        raise _invalid("teaching_mode", f"Choose a teaching mode: {allowed}.")
    return str(mode)


def _editable(session: LiveSession) -> None:
    if session.status == LiveSession.Status.ENDED:
        raise Conflict("The session has ended; it can no longer change.", code="session_ended")


def _active_students(course_id: int) -> list[Student]:
    return list(
        Student.objects.filter(
            enrollments__course_id=course_id,
            enrollments__status=Enrollment.Status.ACTIVE,
            user__is_active=True,
        )
        .select_related("user")
        .order_by("user__last_name", "user__first_name", "user__username", "pk")
    )


def _room_count_for(*, students: int, room_count: int | None, students_per_room: int | None) -> int:
    if students_per_room:
        return max(1, -(-students // students_per_room))
    return room_count or 1


def _ordered(students: list[Student], strategy: str, seed: int | None) -> list[Student]:
    if strategy == LiveSession.Assignment.RANDOM:
        students = list(students)
        random.Random(seed).shuffle(students)  # noqa: S311 (seating, not security)
    return students


def _placement(students: list[Student], rooms: list[BreakoutRoom], occupancy: Counter) -> list[tuple[Student, BreakoutRoom]]:
    """Each student into the room with the fewest students so far (ties: the lowest number):
    round robin on empty rooms, and the emptiest rooms first for latecomers."""
    placed = []
    for student in students:
        room = min(rooms, key=lambda r: (occupancy[r.pk], r.number))
        occupancy[room.pk] += 1
        placed.append((student, room))
    return placed


def session_create(
    *,
    course: Course,
    professor: Professor,
    title: str,
    room_count: int | None = None,
    students_per_room: int | None = None,
    teaching_mode: str | None = None,
    persona: AvatarPersona | None = None,
    assignment_strategy: str = LiveSession.Assignment.ROUND_ROBIN,
    topics: Sequence[str] = (),
    by: User | None = None,
    seed: int | None = None,
) -> LiveSession:
    """A draft session with its rooms, and its enrolled students placed by `assignment_strategy`
    (by hand: nobody placed yet). `room_count` or `students_per_room` sizes it; `topics` give the
    rooms their topics in order."""
    title = (title or "").strip()
    if not title:
        raise _invalid("title", "Give the session a title.")
    if len(title) > TITLE_MAX_CHARS:
        raise _invalid("title", f"A title has at most {TITLE_MAX_CHARS} characters.")
    if professor.tenant_id != course.tenant_id or not course.professors.filter(pk=professor.pk).exists():
        raise DomainError("Only a professor of the course can create its sessions.", code="forbidden")
    if assignment_strategy not in LiveSession.Assignment.values:
        raise _invalid("assignment_strategy", "Choose round_robin, random or manual.")
    for name, value in (("room_count", room_count), ("students_per_room", students_per_room)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ROOMS):
            raise _invalid(name, f"A whole number from 1 to {MAX_ROOMS}.")
    if persona is not None and persona.tenant_id not in (None, course.tenant_id):
        raise _invalid("persona", "No such persona.")
    topics = [str(t or "").strip()[:TOPIC_MAX_CHARS] for t in topics]
    mode = session_mode_clean(teaching_mode) if teaching_mode else course.default_teaching_mode
    students = _active_students(course.pk)
    rooms_needed = _room_count_for(
        students=len(students), room_count=room_count, students_per_room=students_per_room
    )
    rooms_needed = min(MAX_ROOMS, max(rooms_needed, len([t for t in topics if t])))
    with transaction.atomic():
        session = LiveSession.objects.create(
            tenant_id=course.tenant_id, course=course, professor=professor, title=title,
            teaching_mode=mode, persona=persona or course.default_persona,
            room_count=rooms_needed, students_per_room=students_per_room,
            assignment_strategy=assignment_strategy,
        )
        rooms = BreakoutRoom.objects.bulk_create(
            [
                BreakoutRoom(
                    session=session, number=n, name=f"Room {n}",
                    topic=topics[n - 1] if n - 1 < len(topics) else "",
                )
                for n in range(1, rooms_needed + 1)
            ]
        )
        if assignment_strategy != LiveSession.Assignment.MANUAL:
            placed = _placement(_ordered(students, assignment_strategy, seed), rooms, Counter())
            RoomAssignment.objects.bulk_create(
                [RoomAssignment(session=session, room=r, student=s, assigned_by=by) for s, r in placed]
            )
    return session


def session_update(*, session: LiveSession, **changes: Any) -> LiveSession:
    """Title, persona or teaching mode of a session that has not ended."""
    _editable(session)
    fields = []
    if "title" in changes:
        title = str(changes["title"] or "").strip()
        if not title or len(title) > TITLE_MAX_CHARS:
            raise _invalid("title", f"A title of 1 to {TITLE_MAX_CHARS} characters.")
        session.title = title
        fields.append("title")
    if "teaching_mode" in changes:
        session.teaching_mode = session_mode_clean(changes["teaching_mode"])
        fields.append("teaching_mode")
    if "persona" in changes:
        persona = changes["persona"]
        if persona is not None and persona.tenant_id not in (None, session.tenant_id):
            raise _invalid("persona", "No such persona.")
        session.persona = persona
        fields.append("persona")
    if fields:
        session.save(update_fields=fields)
    return session


def room_update(*, room: BreakoutRoom, **changes: Any) -> BreakoutRoom:
    """A room's name, topic, goal or own teaching mode ("" follows the session's)."""
    session = room.session
    _editable(session)
    fields = []
    for name, limit in (("name", 100), ("topic", TOPIC_MAX_CHARS), ("goal", GOAL_MAX_CHARS)):
        if name in changes:
            value = changes[name]
            if not isinstance(value, str):
                raise _invalid(name, "Must be text.")
            value = value.strip()
            if len(value) > limit:
                raise _invalid(name, f"At most {limit} characters.")
            if name == "name" and not value:
                raise _invalid(name, "A room needs a name.")
            setattr(room, name, value)
            fields.append(name)
    if "teaching_mode" in changes:
        mode = changes["teaching_mode"]
        room.teaching_mode = session_mode_clean(mode) if mode else ""
        fields.append("teaching_mode")
    if fields:
        room.save(update_fields=fields)
        if session.status == LiveSession.Status.LIVE:
            from sessions.live import room_status_broadcast

            room_status_broadcast(room_ids=[room.pk])
    return room


def assignment_move(*, session: LiveSession, student: Student, room: BreakoutRoom | None, by: User | None) -> RoomAssignment | None:
    """Put a student in `room` (None: take them out of every room). During a live session the
    student's sockets to the old room get `room.moved` and are closed, so from this commit on they
    receive nothing more of it."""
    _editable(session)
    if room is not None and room.session_id != session.pk:
        raise _invalid("room", "That room belongs to another session.")
    enrolled = Enrollment.objects.filter(
        course_id=session.course_id, student=student, status=Enrollment.Status.ACTIVE
    ).exists()
    if not enrolled:
        raise _invalid("student", "That student is not enrolled in the session's course.")
    with transaction.atomic():
        current = (
            RoomAssignment.objects.select_for_update().filter(session=session, student=student).first()
        )
        old_room_id = current.room_id if current else None
        if room is None:
            if current:
                current.delete()
            assignment = None
        elif current is None:
            assignment = RoomAssignment.objects.create(session=session, room=room, student=student, assigned_by=by)
        else:
            current.room = room
            current.assigned_by = by
            current.save(update_fields=["room", "assigned_by", "assigned_at"])
            assignment = current
        new_room_id = room.pk if room else None
        if session.status == LiveSession.Status.LIVE and old_room_id and old_room_id != new_room_id:
            control_on_commit(
                group=groups.user_group(student.user_id),
                message={
                    "type": "room.moved", "from_room": old_room_id, "to_room": new_room_id,
                    "code": CLOSE_MOVED,
                },
            )
        if session.status == LiveSession.Status.LIVE and old_room_id != new_room_id:
            from sessions.live import room_status_broadcast

            room_status_broadcast(room_ids=[r for r in (old_room_id, new_room_id) if r])
    return assignment


def assignment_move_by_ids(*, session: LiveSession, student_id: Any, room_id: Any, by: User | None) -> RoomAssignment | None:
    """`assignment_move` from ids a client sent: unknown ids are clear errors, never a 500."""
    if isinstance(student_id, bool) or not isinstance(student_id, int):
        raise _invalid("student_id", "A student's id.")
    student = Student.objects.filter(pk=student_id, tenant_id=session.tenant_id).first()
    if student is None:
        raise _invalid("student_id", "No such student.")
    room = None
    if room_id is not None:
        if isinstance(room_id, bool) or not isinstance(room_id, int):
            raise _invalid("room_id", "A room's id, or null to take the student out.")
        room = BreakoutRoom.objects.filter(pk=room_id, session_id=session.pk).first()
        if room is None:
            raise _invalid("room_id", "That room is not part of this session.")
    return assignment_move(session=session, student=student, room=room, by=by)


# --- start ---------------------------------------------------------------------------------


@dataclass(slots=True)
class StartResult:
    session: LiveSession
    started_now: bool
    rooms: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.session.pk,
            "status": self.session.status,
            "started_now": self.started_now,
            "rooms": self.rooms,
            "degraded": self.session.degraded or {},
            "counts": self.counts,
        }


@dataclass(frozen=True, slots=True)
class RoomTutorSpec:
    """What starting one room's tutor needs, read from the database beforehand so starters run
    in parallel threads without touching it (an avatar provider would call its API here)."""

    room_id: int
    room_name: str
    tenant_id: int
    usable_models: tuple[str, ...]
    avatar_provider: str = ""
    avatar_external_id: str = ""


def room_tutor_start(spec: RoomTutorSpec) -> None:
    """The built-in room tutor: needs a model of the chain that can answer. Raises to report a
    soft failure (the room stays open; students' lines are kept; the professor sees why)."""
    if not spec.usable_models:
        raise RuntimeError("No model of the chain can answer (keys missing); enable the offline tutor in the admin.")
    if spec.avatar_provider:
        # Video avatars (HeyGen) are not built in: the tutor answers by text (and voice) only.
        raise RuntimeError(f"The {spec.avatar_provider} avatar is not available; the tutor answers without video.")


def _start_one(spec: RoomTutorSpec) -> tuple[int, str]:
    """Start one room's tutor: (room id, "" or the failure's reason)."""
    try:
        import_string(settings.ROOM_TUTOR_STARTER)(spec)
        return spec.room_id, ""
    except Exception as exc:  # a soft failure: recorded, the session goes on
        logger.warning("room %s: tutor start failed: %s", spec.room_id, exc, exc_info=not isinstance(exc, RuntimeError))
        return spec.room_id, str(exc) or type(exc).__name__


def _tutors_start(session: LiveSession, rooms: list[BreakoutRoom]) -> dict[int, str]:
    """Each room's conversation (the tutor's memory of the room), then every tutor started in
    parallel threads. Returns {room id: failure reason} for the rooms that failed."""
    from sessions.tutor.chain import chain_for_tenant

    for room in rooms:
        Conversation.objects.get_or_create(
            room=room,
            defaults={
                "tenant_id": session.tenant_id, "course_id": session.course_id, "session": session,
                "mode": room.effective_teaching_mode, "persona_id": session.persona_id,
                "title": f"{session.title} / {room.name}",
            },
        )
    usable = tuple(spec.label for spec in chain_for_tenant(tenant_id=session.tenant_id) if not spec.missing)
    persona = session.persona
    specs = [
        RoomTutorSpec(
            room_id=room.pk, room_name=room.name, tenant_id=session.tenant_id, usable_models=usable,
            avatar_provider=persona.avatar_provider if persona else "",
            avatar_external_id=persona.avatar_external_id if persona else "",
        )
        for room in rooms
    ]
    workers = max(1, min(len(specs), int(settings.ROOM_TUTOR_START_WORKERS)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="room-tutor-start") as pool:
        return {room_id: reason for room_id, reason in pool.map(_start_one, specs) if reason}


def _transcription_start(session: LiveSession) -> str:
    """Typed lines are always captioned; speech engines (voice app) report here. "" = fine."""
    return ""


def _start_summary(session: LiveSession, *, started_now: bool) -> StartResult:
    rooms = list(session.rooms.order_by("number").values("id", "name", "number", "topic", "tutor_status", "tutor_error"))
    members: dict[int, list[int]] = {r["id"]: [] for r in rooms}
    for room_id, student_id in RoomAssignment.objects.filter(session=session).values_list("room_id", "student_id"):
        members.setdefault(room_id, []).append(student_id)
    for row in rooms:
        row["students"] = sorted(members.get(row["id"], []))
    ready = sum(1 for r in rooms if r["tutor_status"] == BreakoutRoom.TutorStatus.READY)
    return StartResult(
        session=session,
        started_now=started_now,
        rooms=rooms,
        counts={
            "rooms": len(rooms),
            "students": sum(len(r["students"]) for r in rooms),
            "tutors_ready": ready,
            "tutors_failed": sum(1 for r in rooms if r["tutor_status"] == BreakoutRoom.TutorStatus.FAILED),
            # Enrolled students in no room (taken out by hand, or enrolled since the start).
            "unassigned": Enrollment.objects.filter(
                course_id=session.course_id, status=Enrollment.Status.ACTIVE, student__user__is_active=True
            ).exclude(student__room_assignments__session=session).count(),
        },
    )


def session_start(*, session: LiveSession, by: User | None = None) -> StartResult:
    """Start a draft session (see the module docstring). Idempotent for a live session."""
    if session.status == LiveSession.Status.ENDED:
        raise Conflict("The session has ended; create a new one.", code="session_ended")
    if session.status == LiveSession.Status.LIVE:
        return _start_summary(session, started_now=False)

    # 1. Hard checks: nothing is written when they fail.
    professor = Professor.objects.select_related("user").filter(pk=session.professor_id).first()
    if professor is None or not professor.user.is_active:
        raise Conflict("The session's professor cannot log in; assign an active professor.", code="no_professor")
    students = _active_students(session.course_id)
    if not students:
        raise Conflict("No student is enrolled in the course; enrol students first.", code="no_students")

    # 2. The meeting: built-in rooms need nothing.
    # 3. Rooms and assignments, in one transaction; only one caller gets past the lock.
    with transaction.atomic():
        locked = LiveSession.objects.select_for_update().get(pk=session.pk)
        if locked.status != LiveSession.Status.DRAFT:
            session.refresh_from_db()
            if session.status == LiveSession.Status.ENDED:
                raise Conflict("The session has ended; create a new one.", code="session_ended")
            return _start_summary(session, started_now=False)
        rooms = list(locked.rooms.order_by("number"))
        if not rooms:
            rooms = [BreakoutRoom.objects.create(session=locked, number=1, name="Room 1")]
        assigned = set(RoomAssignment.objects.filter(session=locked).values_list("student_id", flat=True))
        occupancy = Counter(RoomAssignment.objects.filter(session=locked).values_list("room_id", flat=True))
        latecomers = [s for s in students if s.pk not in assigned]
        placed = _placement(_ordered(latecomers, locked.assignment_strategy, None), rooms, occupancy)
        RoomAssignment.objects.bulk_create(
            [RoomAssignment(session=locked, room=r, student=s, assigned_by=by) for s, r in placed]
        )
        now = timezone.now()
        locked.status = LiveSession.Status.LIVE
        locked.started_at = now
        locked.last_activity_at = now
        locked.degraded = {}
        locked.room_count = len(rooms)
        locked.save(update_fields=["status", "started_at", "last_activity_at", "degraded", "room_count"])
        BreakoutRoom.objects.filter(session=locked).update(status=BreakoutRoom.Status.ACTIVE, last_activity_at=now)

    # 4. Room tutors, in parallel; failures are soft.
    locked.persona = AvatarPersona.objects.filter(pk=locked.persona_id).first()
    failures = _tutors_start(locked, rooms)
    ok_ids = [r.pk for r in rooms if r.pk not in failures]
    BreakoutRoom.objects.filter(pk__in=ok_ids).update(tutor_status=BreakoutRoom.TutorStatus.READY, tutor_error="")
    for room_id, reason in failures.items():
        BreakoutRoom.objects.filter(pk=room_id).update(tutor_status=BreakoutRoom.TutorStatus.FAILED, tutor_error=reason[:2000])
    degraded: dict[str, Any] = {}
    if failures:
        degraded["tutors"] = {str(room_id): reason for room_id, reason in failures.items()}
    # 5. Transcription.
    transcription = _transcription_start(locked)
    if transcription:
        degraded["transcription"] = transcription
    if degraded:
        LiveSession.objects.filter(pk=session.pk).update(degraded=degraded)
    session.refresh_from_db()
    logger.info(
        "session %s started: %s rooms, %s tutors failed, %s latecomers placed",
        session.pk, len(rooms), len(failures), len(placed),
    )
    from sessions.live import session_status_broadcast

    session_status_broadcast(session)
    # 6. What worked.
    result = _start_summary(session, started_now=True)
    result.counts["placed_at_start"] = len(placed)
    return result


# --- end -------------------------------------------------------------------------------------


def session_end(*, session: LiveSession, by: User | None = None, reason: str = "ended") -> LiveSession:
    """End a live (or draft) session: rooms closed, tutors stopped, a final `session.status` to
    every socket of it, then the sockets closed (4000) and analytics queued. Idempotent."""
    if session.status == LiveSession.Status.ENDED:
        return session
    with transaction.atomic():
        locked = LiveSession.objects.select_for_update().get(pk=session.pk)
        if locked.status == LiveSession.Status.ENDED:
            session.refresh_from_db()
            return session
        now = timezone.now()
        locked.status = LiveSession.Status.ENDED
        locked.started_at = locked.started_at or now
        locked.ended_at = now
        degraded = dict(locked.degraded or {})
        if reason != "ended":
            degraded["ended_because"] = reason
        locked.degraded = degraded
        locked.save(update_fields=["status", "started_at", "ended_at", "degraded"])
        BreakoutRoom.objects.filter(session=locked).update(
            status=BreakoutRoom.Status.CLOSED, tutor_status=BreakoutRoom.TutorStatus.STOPPED
        )
        room_ids = list(locked.rooms.values_list("pk", flat=True))
        from sessions.live import session_status_broadcast

        session_status_broadcast(locked)
        for room_id in room_ids:
            # Stop a reply streaming in whichever process runs it, then close the room's sockets.
            control_on_commit(group=groups.room_group(room_id), message={"type": "tutor.cancel"})
            control_on_commit(
                group=groups.room_group(room_id),
                message={"type": "ws.close", "code": CLOSE_SESSION_ENDED, "kind": "room", "object_id": room_id},
            )
        control_on_commit(
            group=groups.session_monitor_group(locked.pk),
            message={"type": "ws.close", "code": CLOSE_SESSION_ENDED, "kind": "monitor", "object_id": locked.pk},
        )
        transaction.on_commit(lambda: _announce_end(locked.pk))
    session.refresh_from_db()
    logger.info("session %s ended (%s) by %s", session.pk, reason, getattr(by, "pk", None))
    return session


def _announce_end(session_id: int) -> None:
    from sessions.signals import session_ended

    session_ended.send_robust(sender=LiveSession, session_id=session_id)


def sessions_end_idle(*, now=None) -> list[int]:
    """End sessions left live with no activity for SESSION_IDLE_END_MINUTES (the beat task)."""
    now = now or timezone.now()
    cutoff = now - timedelta(minutes=float(settings.SESSION_IDLE_END_MINUTES))
    stale = list(
        LiveSession.objects.filter(status=LiveSession.Status.LIVE, last_activity_at__lt=cutoff).order_by("pk")
    )
    for session in stale:
        session_end(session=session, reason="idle")
    return [s.pk for s in stale]
