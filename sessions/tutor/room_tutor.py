"""The tutor of a breakout room: one tutor talking with every student of the room.

Each student has their own socket, so every line arrives with who said it (a `TranscriptSegment`
of the room). After a line, `room_tutor_nudge` waits ROOM_TUTOR_DEBOUNCE_MS for the others to add
theirs, then answers everything said since its last reply in one turn, addressed to the room:
names, the quiet students to invite in, the room's topic and goal, the session's mode and the
professor's hint are in its context (`room_turn_prepare`). The reply streams to the room's group
(`tutor.delta`) and is persisted as the room's next line (`tutor.message`, also to the monitor).

One reply at a time per room, across processes: the turn holds a cache lock (Redis when
configured). A line that arrives while a reply runs, here or in another process, leaves a
"pending" mark; the lock holder answers again when its reply ends, so no line goes unanswered and
replies never overlap.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from courses.models import Student
from sessions.models import (
    BreakoutRoom,
    Conversation,
    LiveSession,
    Speaker,
    TranscriptSegment,
)
from sessions.providers.base import HistoryLine, LectureLine, TutorContext
from sessions.services import tutor_reply_open
from sessions.tutor import prompts, turn

logger = logging.getLogger(__name__)

LOCK_GRACE_SECONDS = 30


def _lock_key(room_id: int) -> str:
    return f"room-tutor:lock:{room_id}"


def _pending_key(room_id: int) -> str:
    return f"room-tutor:pending:{room_id}"


def _role(kind: str) -> str:
    return {Speaker.STUDENT: "student", Speaker.TUTOR: "tutor", Speaker.PROFESSOR: "professor"}.get(kind, "system")


def _first_names(room_id: int) -> dict[int, str]:
    """{user id: first name} of the room's students, in the room's order."""
    students = (
        Student.objects.filter(room_assignments__room_id=room_id)
        .select_related("user")
        .order_by("user__last_name", "user__first_name", "user__username")
    )
    return {s.user_id: s.first_name for s in students}


def _quiet(names: dict[int, str], lines: list[TranscriptSegment]) -> list[str]:
    """Students whose share of the room's student lines is under ROOM_QUIET_SHARE, once the
    room has talked a little (two lines)."""
    spoken = [s.speaker_user_id for s in lines if s.speaker_kind == Speaker.STUDENT]
    if len(spoken) < 2 or len(names) < 2:
        return []
    share = float(settings.ROOM_QUIET_SHARE)
    return [name for user_id, name in names.items() if spoken.count(user_id) / len(spoken) < share]


def room_turn_prepare(room_id: int) -> turn.TurnPlan | None:
    """The plan of the room tutor's next reply, or None when there is nothing to answer (no
    student line since its last reply), the session is not live or the tutor did not start."""
    room = (
        BreakoutRoom.objects.select_related(
            "session__course__tenant", "session__course__default_persona", "session__persona"
        )
        .filter(pk=room_id)
        .first()
    )
    if room is None:
        return None
    session = room.session
    if session.status != LiveSession.Status.LIVE or room.tutor_status != BreakoutRoom.TutorStatus.READY:
        return None
    window = int(settings.TUTOR_HISTORY_MESSAGES) * 2
    recent = list(
        TranscriptSegment.objects.filter(room_id=room_id).select_related("message").order_by("-seq")
        .only("seq", "speaker_kind", "speaker_user_id", "speaker_name", "text", "created_at", "message__created_at")[:window]
    )
    recent.reverse()
    last = max((s for s in recent if s.speaker_kind == Speaker.TUTOR), key=lambda s: s.seq, default=None)
    last_tutor = last.seq if last else 0
    # A tutor line takes its seq when the reply ends: a line said while it streamed has a lower
    # seq, yet came after the reply was prepared (its Message opened), so it is still unanswered.
    opened_at = last.message.created_at if last is not None and last.message is not None else None
    new_lines = [
        s for s in recent
        if s.speaker_kind == Speaker.STUDENT and (s.seq > last_tutor or (opened_at is not None and s.created_at > opened_at))
    ]
    if not new_lines:
        return None
    course = session.course
    conversation, _ = Conversation.objects.select_related("course__tenant", "persona").get_or_create(
        room=room,
        defaults={
            "tenant_id": session.tenant_id, "course": course, "session": session,
            "mode": room.effective_teaching_mode, "persona": session.persona,
            "title": f"{session.title} / {room.name}",
        },
    )
    persona = session.persona or course.default_persona
    names = _first_names(room_id)
    first_new = new_lines[0].seq
    history = prompts.history_within_budget(
        [
            HistoryLine(role=_role(s.speaker_kind), name=s.speaker_name, text=s.text)
            for s in recent
            if s.seq < first_new or (s.seq > first_new and s.speaker_kind != Speaker.STUDENT)
        ]
    )
    if len(new_lines) == 1:
        question = new_lines[0].text
    else:
        question = "\n".join(f"{names.get(s.speaker_user_id, s.speaker_name)}: {s.text}" for s in new_lines)
    asker = new_lines[-1]
    lecture = [
        LectureLine(at=timezone.localtime(s.created_at).strftime("%H:%M"), text=s.text)
        for s in reversed(
            TranscriptSegment.objects.filter(session_id=session.pk, room__isnull=True).order_by("-seq")
            .only("created_at", "text")[: max(0, int(settings.LECTURE_LINES))]
        )
    ]
    context = TutorContext(
        tenant_id=session.tenant_id,
        course_id=course.pk,
        course_code=course.code,
        course_title=course.title,
        question=question,
        student_name=names.get(asker.speaker_user_id, asker.speaker_name.split(" ")[0]),
        teaching_mode=room.effective_teaching_mode,
        persona_name=persona.name if persona else turn.DEFAULT_PERSONA_NAME,
        persona_style=persona.style_prompt if persona else "",
        scope_terms=[str(term) for term in course.scope_terms or []],
        room_topic=room.topic,
        room_goal=room.goal,
        hint=session.tutor_hint,
        participants=list(names.values()),
        quiet_students=_quiet(names, recent),
        history=history,
        passages=turn.passages_for(conversation=conversation, question=question, history=history),
        lecture=lecture,
        conversation_id=conversation.pk,
    )
    reply = tutor_reply_open(conversation=conversation)
    return turn.plan_build(
        conversation=conversation, context=context, reply=reply, question_id=None,
        user_id=asker.speaker_user_id, room_id=room.pk, session_id=session.pk,
    )


# --- running (async) ----------------------------------------------------------------------------

_debounce: dict[int, asyncio.Task] = {}


def room_tutor_mark_line(room_id: int) -> bool:
    """Sync, in the thread hop that persisted a student's line: True when a reply is running
    (here or in another process); the room is then marked pending and answered right after."""
    if cache.get(_lock_key(room_id)):
        cache.set(_pending_key(room_id), 1, timeout=int(settings.LLM_TOTAL_TIMEOUT_SECONDS) + LOCK_GRACE_SECONDS)
        return True
    return False


async def room_tutor_nudge(room_id: int, *, busy: bool | None = None, delay_ms: int | None = None) -> None:
    """A student line was persisted: answer the room after the debounce (a later line restarts
    the wait). `busy`: what `room_tutor_mark_line` said (asked here when not given)."""
    if busy is None:
        busy = await sync_to_async(room_tutor_mark_line)(room_id)
    if busy:
        return
    waiting = _debounce.get(room_id)
    if waiting is not None and not waiting.done():
        waiting.cancel()
    delay = int(settings.ROOM_TUTOR_DEBOUNCE_MS) if delay_ms is None else delay_ms
    task = asyncio.create_task(_answer_after(room_id, delay / 1000), name=f"room-tutor-{room_id}")
    _debounce[room_id] = task

    def forget(done: asyncio.Task) -> None:
        if _debounce.get(room_id) is done:
            del _debounce[room_id]

    task.add_done_callback(forget)


async def _answer_after(room_id: int, delay: float) -> None:
    if delay > 0:
        await asyncio.sleep(delay)
    # From here on a new line must not cancel this task (it would cut a reply): it marks pending.
    _debounce.pop(room_id, None)
    await room_tutor_answer(room_id)


async def room_tutor_answer(room_id: int) -> Any:
    """Answer the room now, then again while lines arrived meanwhile. Returns the last reply.
    The cache is Redis across processes: its calls use the async API, off the event loop."""
    ttl = int(settings.LLM_TOTAL_TIMEOUT_SECONDS) + LOCK_GRACE_SECONDS
    reply = None
    while True:
        if not await cache.aadd(_lock_key(room_id), 1, timeout=ttl):
            await cache.aset(_pending_key(room_id), 1, timeout=ttl)
            return reply
        try:
            while True:
                await cache.adelete(_pending_key(room_id))
                plan = await database_sync_to_async(room_turn_prepare)(room_id)
                if plan is None:
                    break
                task = await turn.turn_start(plan)
                try:
                    reply = await asyncio.shield(task)
                except asyncio.CancelledError:
                    if not task.done():
                        raise  # this coroutine itself was cancelled
                    reply = None  # the reply was stopped (interrupt, session end)
                if not await cache.aget(_pending_key(room_id)):
                    break
        finally:
            await cache.adelete(_lock_key(room_id))
        # A line that came in between the last check and the release answers now.
        if not await cache.aget(_pending_key(room_id)):
            return reply


async def room_tutor_stop(room_id: int) -> None:
    """Stop this process's pending or running reply of a room (interrupt, session end)."""
    waiting = _debounce.pop(room_id, None)
    if waiting is not None and not waiting.done():
        waiting.cancel()
    conversation_id = await database_sync_to_async(_room_conversation_id)(room_id)
    if conversation_id is not None:
        await turn.turn_cancel(conversation_id)


def _room_conversation_id(room_id: int) -> int | None:
    return Conversation.objects.filter(room_id=room_id).values_list("pk", flat=True).first()
