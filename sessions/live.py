"""What happens inside a live session: lines said in rooms, the professor's steering, and the
events that carry both to the room and monitor sockets.

Every line (a student's, the tutor's, the professor's broadcast) is a `TranscriptSegment` with
the session's next `seq`, persisted first and broadcast after commit to the room's group and the
session's monitor group; a client that reconnects with `?after_seq=N` gets the same events from
the database (`segment_event` builds both). Steering (mode, hint) changes rows, then sends
`room.status` / `session.status`, which are snapshots (seq null): a reconnecting client gets the
current state on connect.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from courses.exceptions import Conflict, DomainError
from courses.models import User
from sessions import groups
from sessions.models import BreakoutRoom, LiveSession, Message, Speaker, TranscriptSegment
from sessions.orchestration import session_mode_clean
from sessions.realtime import broadcast_on_commit, utc_timestamp
from sessions.services import message_text_clean, utterance_audio_save

BROADCAST_MAX_CHARS = 2000
HINT_MAX_CHARS = 2000

logger = logging.getLogger(__name__)


def _require_live(session: LiveSession) -> None:
    if session.status != LiveSession.Status.LIVE:
        if session.status == LiveSession.Status.ENDED:
            raise Conflict("The session has ended.", code="session_ended")
        raise Conflict("The session has not started yet.", code="session_not_live")


def session_next_seq(session_id: int, count: int = 1) -> int:
    """Take the session's next `count` seqs (call inside the writing transaction); returns the
    first. The row update serialises writers, so seqs never collide across processes."""
    LiveSession.objects.filter(pk=session_id).update(
        last_seq=F("last_seq") + count, last_activity_at=timezone.now()
    )
    last = LiveSession.objects.filter(pk=session_id).values_list("last_seq", flat=True).get()
    return last - count + 1


def _offset_ms(session: LiveSession) -> int:
    if not session.started_at:
        return 0
    return max(0, int((timezone.now() - session.started_at).total_seconds() * 1000))


# --- events ----------------------------------------------------------------------------------


def _speaker(segment: TranscriptSegment) -> dict[str, Any]:
    return {"id": segment.speaker_user_id, "name": segment.speaker_name, "kind": segment.speaker_kind}


def segment_event(segment: TranscriptSegment, message: Message | None = None) -> dict[str, Any]:
    """The persisted event a segment is on the wire ({event_type, data, seq}): a tutor's line is
    `tutor.message`, a professor's line in a room `room.broadcast`, everything else
    `transcript.final`. `message`: the tutor line's Message, if not reachable as
    `segment.message` without a query."""
    base = {
        "segment_id": segment.pk,
        "session_id": segment.session_id,
        "room_id": segment.room_id,
        "speaker": _speaker(segment),
        "text": segment.text,
    }
    if segment.speaker_kind == Speaker.TUTOR:
        from sessions.selectors import tutor_message_data

        message = message or segment.message
        if message is None:  # its Message was deleted: the line stays, as said
            data = {**base, "message_id": None, "citations": [], "guardrail": "on_topic", "model": "",
                    "offline": False, "status": Message.Status.COMPLETE}
        else:
            data = {**base, **tutor_message_data(message), "text": segment.text}
        return {"event_type": "tutor.message", "seq": segment.seq, "data": data}
    if segment.speaker_kind == Speaker.PROFESSOR and segment.room_id is not None:
        return {"event_type": "room.broadcast", "seq": segment.seq, "data": base}
    return {
        "event_type": "transcript.final",
        "seq": segment.seq,
        "data": {
            **base,
            "source": segment.source,
            "start_ms": segment.start_ms,
            "end_ms": segment.end_ms,
            "provider": segment.provider,
        },
    }


def _segment_groups(segment: TranscriptSegment) -> list[str]:
    targets = [groups.session_monitor_group(segment.session_id)]
    if segment.room_id is not None:
        targets.insert(0, groups.room_group(segment.room_id))
    return targets


def _segment_broadcast(segment: TranscriptSegment, message: Message | None = None) -> None:
    broadcast_on_commit(groups=_segment_groups(segment), **segment_event(segment, message))
    _segment_announce(segment)


def _segment_announce(segment: TranscriptSegment) -> None:
    """`segment_recorded` after commit (the live radar observes student lines on it). A failing
    receiver is logged: the line is saved and broadcast whatever analytics does."""
    from sessions.signals import segment_recorded

    ids = {
        "segment_id": segment.pk, "session_id": segment.session_id, "room_id": segment.room_id,
        "speaker_kind": segment.speaker_kind,
    }

    def announce() -> None:
        for receiver, result in segment_recorded.send_robust(sender=TranscriptSegment, **ids):
            if isinstance(result, Exception):
                logger.error("segment_recorded receiver %r failed", receiver, exc_info=result)

    transaction.on_commit(announce)


def session_status_broadcast(session: LiveSession) -> None:
    """`session.status` to the monitor and every room of the session (after commit)."""
    from sessions.selectors import session_status_for_monitor

    data = session_status_for_monitor(session=session)
    room_groups = [groups.room_group(room["id"]) for room in data["rooms"]]
    broadcast_on_commit(
        groups=[groups.session_monitor_group(session.pk), *room_groups],
        event_type="session.status",
        data=data,
    )


def room_status_broadcast(*, room_ids: list[int]) -> None:
    """`room.status` of each room to the room and to its session's monitor (after commit)."""
    from sessions.selectors import room_status_many

    for data in room_status_many(room_ids=room_ids):
        broadcast_on_commit(
            groups=[groups.room_group(data["id"]), groups.session_monitor_group(data["session_id"])],
            event_type="room.status",
            data=data,
        )


# --- lines ----------------------------------------------------------------------------------


def _person_line_post(
    *, session: LiveSession, room: BreakoutRoom | None, speaker_kind: str, user: User, text: Any, source: str,
    provider: str, start_ms: int | None, end_ms: int | None, audio: bytes | None,
) -> TranscriptSegment:
    """A person's line (a student in a room, the professor in the lecture): cleaned, checked,
    persisted with the session's next seq (and its WAV when kept), then broadcast after commit."""
    text = message_text_clean(text)
    _require_live(session)
    offset = _offset_ms(session)
    start = offset if start_ms is None else start_ms
    with transaction.atomic():
        seq = session_next_seq(session.pk)
        segment = TranscriptSegment.objects.create(
            session=session, room=room, seq=seq, speaker_kind=speaker_kind, speaker_user=user,
            speaker_name=user.display_name, text=text, source=source, provider=provider,
            start_ms=start, end_ms=max(start, offset if end_ms is None else end_ms),
        )
        if room is not None:
            BreakoutRoom.objects.filter(pk=room.pk).update(last_activity_at=timezone.now())
        if audio:
            _segment_audio_save(segment, audio)
        _segment_broadcast(segment)
    return segment


def room_line_post(
    *, room: BreakoutRoom, user: User, text: Any, source: str = TranscriptSegment.Source.TEXT,
    provider: str = "", start_ms: int | None = None, end_ms: int | None = None, audio: bytes | None = None,
) -> TranscriptSegment:
    """A student's line in their room: persisted with the session's next seq, then broadcast as
    `transcript.final` to the room and the monitor. DomainError for a bad line (nothing kept).
    `audio`: the utterance as WAV, kept in `segment.audio` (the tenant's keep_audio)."""
    return _person_line_post(
        session=room.session, room=room, speaker_kind=Speaker.STUDENT, user=user, text=text, source=source,
        provider=provider, start_ms=start_ms, end_ms=end_ms, audio=audio,
    )


def room_tutor_line_post(*, message: Message, room_id: int, session_id: int, speaker_name: str) -> TranscriptSegment:
    """The transcript side of a closed tutor reply in a room (inside the closing transaction)."""
    session = LiveSession.objects.only("pk", "started_at").get(pk=session_id)
    offset = _offset_ms(session)
    seq = session_next_seq(session_id)
    segment = TranscriptSegment.objects.create(
        session_id=session_id, room_id=room_id, seq=seq, speaker_kind=Speaker.TUTOR,
        speaker_name=speaker_name, text=message.text, source=TranscriptSegment.Source.TEXT,
        provider=message.model, start_ms=offset, end_ms=offset, message=message,
    )
    BreakoutRoom.objects.filter(pk=room_id).update(last_activity_at=timezone.now())
    _segment_broadcast(segment, message)
    return segment


# --- steering ----------------------------------------------------------------------------------


def _session_rooms(session: LiveSession, room_id: Any) -> list[BreakoutRoom]:
    """`room_id`: one room of the session, or "all"/None for every room."""
    rooms = session.rooms.order_by("number")
    if room_id in (None, "", "all"):
        return list(rooms)
    if isinstance(room_id, bool) or not isinstance(room_id, int | str) or not str(room_id).isdigit():
        raise DomainError("room_id is a room's id or \"all\".", code="invalid", fields={"room_id": ["Invalid."]})
    room = rooms.filter(pk=int(room_id)).first()
    if room is None:
        raise DomainError("That room is not part of this session.", code="not_found", fields={"room_id": ["Unknown room."]})
    return [room]


def room_broadcast(*, session: LiveSession, by: User, text: Any, room_id: Any = "all") -> list[TranscriptSegment]:
    """The professor's message to one room or all: a segment per room (each room's transcript
    and replay holds it), broadcast as `room.broadcast`. The room tutors read it as context."""
    _require_live(session)
    if not isinstance(text, str) or not text.strip():
        raise DomainError("Write something to broadcast.", code="empty_message", fields={"text": ["Required."]})
    text = text.strip()
    if len(text) > BROADCAST_MAX_CHARS:
        raise DomainError(
            f"A broadcast has at most {BROADCAST_MAX_CHARS} characters.", code="message_too_long",
            fields={"text": ["Too long."]},
        )
    rooms = _session_rooms(session, room_id)
    offset = _offset_ms(session)
    with transaction.atomic():
        first = session_next_seq(session.pk, count=len(rooms))
        segments = TranscriptSegment.objects.bulk_create(
            [
                TranscriptSegment(
                    session=session, room=room, seq=first + i, speaker_kind=Speaker.PROFESSOR,
                    speaker_user=by, speaker_name=by.display_name, text=text,
                    start_ms=offset, end_ms=offset,
                )
                for i, room in enumerate(rooms)
            ]
        )
        for segment in segments:
            _segment_broadcast(segment)
    return segments


def session_mode_switch(*, session: LiveSession, mode: Any, room_id: Any = "all") -> list[int]:
    """Switch the tutors of one room or every room to a teaching mode mid-session (Socratic,
    Q&A, quiz lock...). The next reply of each uses the mode's prompt. Returns the room ids."""
    if session.status == LiveSession.Status.ENDED:
        raise Conflict("The session has ended.", code="session_ended")
    mode = session_mode_clean(mode)
    rooms = _session_rooms(session, room_id)
    ids = [room.pk for room in rooms]
    with transaction.atomic():
        if len(rooms) == session.rooms.count():
            # Every room: the session's mode, and rooms follow it.
            LiveSession.objects.filter(pk=session.pk).update(teaching_mode=mode)
            session.teaching_mode = mode
            BreakoutRoom.objects.filter(pk__in=ids).update(teaching_mode="")
        else:
            BreakoutRoom.objects.filter(pk__in=ids).update(teaching_mode=mode)
        from sessions.models import Conversation

        Conversation.objects.filter(room_id__in=ids).update(mode=mode)
        if session.status == LiveSession.Status.LIVE:
            room_status_broadcast(room_ids=ids)
            session_status_broadcast(session)
    return ids


def session_hint_set(*, session: LiveSession, text: Any) -> str:
    """Push a hint into every room tutor's context ("" removes it)."""
    if session.status == LiveSession.Status.ENDED:
        raise Conflict("The session has ended.", code="session_ended")
    if not isinstance(text, str):
        raise DomainError("A hint is text.", code="invalid", fields={"text": ["Must be a string."]})
    text = text.strip()
    if len(text) > HINT_MAX_CHARS:
        raise DomainError(f"A hint has at most {HINT_MAX_CHARS} characters.", code="message_too_long", fields={"text": ["Too long."]})
    with transaction.atomic():
        LiveSession.objects.filter(pk=session.pk).update(tutor_hint=text)
        session.tutor_hint = text
        if session.status == LiveSession.Status.LIVE:
            session_status_broadcast(session)
    return text


def room_open(room: BreakoutRoom) -> None:
    """Ready a room for a connecting socket: a tutor reply its dead process left streaming (a
    restart mid-reply) is closed as interrupted, so the room is not stuck "thinking"."""
    from sessions.models import Conversation
    from sessions.services import stale_replies_close

    conversation_id = Conversation.objects.filter(room=room).values_list("pk", flat=True).first()
    if conversation_id is not None:
        stale_replies_close(conversation_id=conversation_id)


def monitor_lines_per_room() -> int:
    return max(1, int(settings.MONITOR_LINES_PER_ROOM))


# --- "Clarify for everyone" (the confusion radar) -------------------------------------------------

CLARIFY_TOPIC_MAX_CHARS = 100
CLARIFY_TEXT_MAX_CHARS = 1000
CLARIFY_HINT = "Several students are confused about {topic}; clarify it briefly at the next turn."
CLARIFY_DEFAULT_BROADCAST = "Several of you are unsure about {topic}: your tutor will go over it again briefly."


def _clarify_clean(topic: Any, text: Any) -> tuple[str, str]:
    if not isinstance(topic, str) or not " ".join(topic.split()):
        raise DomainError("Name the topic to clarify.", code="invalid", fields={"topic": ["Required."]})
    topic = " ".join(topic.split())
    if len(topic) > CLARIFY_TOPIC_MAX_CHARS:
        raise DomainError(
            f"A topic has at most {CLARIFY_TOPIC_MAX_CHARS} characters.", code="message_too_long",
            fields={"topic": ["Too long."]},
        )
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise DomainError("The message is text.", code="invalid", fields={"text": ["Must be a string."]})
    text = text.strip()
    if len(text) > CLARIFY_TEXT_MAX_CHARS:
        raise DomainError(
            f"The message has at most {CLARIFY_TEXT_MAX_CHARS} characters.", code="message_too_long",
            fields={"text": ["Too long."]},
        )
    return topic, text


def clarify_hint_merge(hint: str, *, topic: str, text: str) -> str:
    """The session's hint with a clarify line for `topic` added (an earlier line for the same
    topic replaced); the oldest lines go when it would exceed HINT_MAX_CHARS."""
    head = CLARIFY_HINT.format(topic=topic)
    line = f"{head} The professor adds: {text}" if text else head
    lines = [kept for kept in hint.splitlines() if kept.strip() and not kept.startswith(head)]
    lines.append(line)
    while len(lines) > 1 and len("\n".join(lines)) > HINT_MAX_CHARS:
        lines.pop(0)
    return "\n".join(lines)[:HINT_MAX_CHARS]


def session_clarify(*, session: LiveSession, by: User, topic: Any, text: Any = None) -> dict[str, Any]:
    """"Clarify for everyone": every room tutor's hint asks for a brief clarification of `topic`
    at its next turn (the professor's text added), and every room gets a `room.broadcast` (the
    professor's text, or one naming the topic). After commit, `confusion_clarified` lets the
    radar mark the topic. Returns {topic, text, hint, seqs}."""
    _require_live(session)
    topic, text = _clarify_clean(topic, text)
    with transaction.atomic():
        locked = LiveSession.objects.select_for_update().only("pk", "tutor_hint").get(pk=session.pk)
        hint = clarify_hint_merge(locked.tutor_hint, topic=topic, text=text)
        session_hint_set(session=session, text=hint)
        message = text or CLARIFY_DEFAULT_BROADCAST.format(topic=topic)
        segments = room_broadcast(session=session, by=by, text=message, room_id="all")
        at = timezone.now()
        announced = {
            "session_id": session.pk, "topic": topic, "text": message,
            "by": {"id": by.pk, "name": by.display_name}, "at": utc_timestamp(at),
        }

        def announce() -> None:
            from sessions.signals import confusion_clarified

            for receiver, result in confusion_clarified.send_robust(sender=LiveSession, **announced):
                if isinstance(result, Exception):
                    logger.error("confusion_clarified receiver %r failed", receiver, exc_info=result)

        transaction.on_commit(announce)
    return {"topic": topic, "text": message, "hint": hint, "seqs": [s.seq for s in segments]}


def monitor_snapshot_events(*, session_id: int) -> list[tuple[str, Any]]:
    """What other apps add to the monitor's snapshot (the radar), as (event_type, data); a
    failing receiver is logged and left out, the monitor connects anyway."""
    from sessions.signals import monitor_snapshot

    events: list[tuple[str, Any]] = []
    for receiver, result in monitor_snapshot.send_robust(sender=LiveSession, session_id=session_id):
        if isinstance(result, Exception):
            logger.error("monitor_snapshot receiver %r failed", receiver, exc_info=result)
        elif result:
            events.extend(result)
    return events


# --- voice: the lecture, partial transcripts, STT engine switches ------------------------------


def _segment_audio_save(segment: TranscriptSegment, wav: bytes) -> None:
    """The utterance's WAV into default storage (filesystem or S3, settings "Audio storage")."""
    utterance_audio_save(segment, wav, name=f"s{segment.session_id}-{segment.seq}.wav")


def lecture_line_post(
    *, session: LiveSession, user: User, text: Any, provider: str = "",
    start_ms: int | None = None, end_ms: int | None = None, audio: bytes | None = None,
) -> TranscriptSegment:
    """A line of the professor's lecture (the main room: `room` empty, speaker professor), said
    into the lecture socket: persisted with the session's next seq, then `transcript.final`
    (source speech) to the monitor. The room tutors read the latest ones into their prompt."""
    return _person_line_post(
        session=session, room=None, speaker_kind=Speaker.PROFESSOR, user=user, text=text,
        source=TranscriptSegment.Source.SPEECH, provider=provider, start_ms=start_ms, end_ms=end_ms, audio=audio,
    )


def session_offset_ms(session: LiveSession) -> int:
    """Milliseconds since the session started (0 before): the clock of its segments."""
    return _offset_ms(session)


async def transcript_partial_send(
    *, session_id: int | None, room_id: int | None, conversation_id: int | None = None,
    speaker: dict[str, Any], text: str, start_ms: int, end_ms: int, provider: str,
) -> None:
    """`transcript.partial`: what a speaker is saying, before it is final. Not persisted, no
    seq (the final replaces it), so it goes out at once rather than after a commit: to the room
    and the session's monitor, or to a practice conversation."""
    from sessions.realtime import group_event, group_send_async

    data = {
        "segment_id": None, "room_id": room_id, "speaker": speaker, "text": text, "source": "speech",
        "start_ms": start_ms, "end_ms": max(start_ms, end_ms), "provider": provider,
    }
    targets = []
    if conversation_id is not None:
        data["conversation_id"] = conversation_id
        targets.append(groups.conversation_group(conversation_id))
    if room_id is not None:
        targets.append(groups.room_group(room_id))
    if session_id is not None:
        targets.append(groups.session_monitor_group(session_id))
    message = group_event("transcript.partial", data)
    for group in targets:
        await group_send_async(group, message)


def stt_switch_record(
    *, tenant_id: int, session_id: int | None, room_id: int | None, course_id: int | None,
    user_id: int | None, from_engine: str, to_engine: str | None, reason: str,
) -> None:
    """An STT engine failed and the chain moved on: a UsageEvent (outcome error) for the failed
    engine, `session.degraded["stt"]`, and `voice.engine` to the session's monitor."""
    from courses.usage import record_provider_call

    reason = (reason or "")[:300]
    if from_engine:
        record_provider_call(
            tenant_id=tenant_id, kind="stt", provider=from_engine, model="", outcome="error", error=reason,
            course_id=course_id, session_id=session_id, user_id=user_id,
        )
    if session_id is None:
        return
    with transaction.atomic():
        locked = LiveSession.objects.select_for_update().filter(pk=session_id).first()
        if locked is None:
            return
        degraded = dict(locked.degraded or {})
        degraded["stt"] = {"from": from_engine, "to": to_engine, "reason": reason, "at": timezone.now().isoformat()}
        LiveSession.objects.filter(pk=session_id).update(degraded=degraded)
        broadcast_on_commit(
            groups=[groups.session_monitor_group(session_id)], event_type="voice.engine",
            data={"room_id": room_id, "from": from_engine, "to": to_engine, "reason": reason},
        )
