"""Computing what happened in a session, from its transcript, and storing it.

`session_analytics_compute()` loads the session's rows with a constant number of queries
(whatever the number of students, rooms or lines), runs analytics/metrics.py over them, writes
one StudentProgress per assigned student and the SessionAnalytics, and returns the latter.

- Versioned: rows carry VERSION; a computation of an older version never overwrites rows a
  newer one wrote (the SessionAnalytics row is locked while the result is written).
- Idempotent: recomputing updates the same rows in place (same ids, same content).
- final=True (the session ended, or a professor asked): status computing -> ready (or failed),
  `progress` 0-100 stored as it goes, the summary through the LLM chain (extractive fallback),
  topics covered and confusion points refined by the chain when it has an online model
  (analytics/refine.py; what happened in `participation["refine"]`).
- final=False (during the session, every few new lines): the same numbers, the extractive
  summary only (a model-written one is kept), status "ready", `participation["final"]` False.
  Cheap: one pass over the lines, no model call. Once a session has ended and its final result
  is stored, a late incremental run changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from analytics import metrics, refine, summary
from analytics.models import SessionAnalytics, StudentProgress
from sessions.models import BreakoutRoom, LiveSession, RoomAssignment, Speaker, TranscriptSegment

VERSION = 2
logger = logging.getLogger(__name__)

PROGRESS_FIELDS = [
    "talk_time_ms", "speech_turns", "text_turns", "questions_asked", "words", "hints_needed",
    "topics_covered", "confusion_points", "engagement_score", "evidence", "version", "computed_at",
]

# Kept for callers of the first version.
is_question = metrics.is_question


def silence_ms() -> int:
    return int(float(getattr(settings, "ANALYTICS_SILENCE_SECONDS", 60)) * 1000)


def repeat_window() -> int:
    return int(getattr(settings, "ANALYTICS_REPEAT_WITHIN_LINES", metrics.DEFAULT_REPEAT_WINDOW))


def session_rows_load(*, session: LiveSession) -> tuple[metrics.SessionInput, dict[int, str], dict[int, str]]:
    """The computation's input, in three queries: rooms, assignments, final segments.
    Returns (input, student id -> name, room id -> room name)."""
    rooms = list(BreakoutRoom.objects.filter(session_id=session.pk).values_list("id", "name", "topic"))
    assignments = list(
        RoomAssignment.objects.filter(session_id=session.pk).values_list(
            "student_id", "room_id", "student__user_id", "student__preferred_name",
            "student__user__first_name", "student__user__username",
        )
    )
    student_of_user = {user_id: student_id for student_id, _r, user_id, *_ in assignments}
    names = {student_id: preferred or first or username for student_id, _r, _u, preferred, first, username in assignments}
    segments = (
        TranscriptSegment.objects.filter(session_id=session.pk, is_final=True)
        .order_by("seq")
        .values_list(
            "seq", "room_id", "speaker_kind", "speaker_user_id", "text", "source", "start_ms", "end_ms",
            "message__guardrail",
        )
    )
    lines = [
        metrics.Line(
            seq=seq, room_id=room_id, speaker=kind, text=text,
            student_id=student_of_user.get(user_id) if kind == Speaker.STUDENT else None,
            source=source, start_ms=start_ms, end_ms=end_ms, guardrail=guardrail or "",
        )
        for seq, room_id, kind, user_id, text, source, start_ms, end_ms, guardrail in segments.iterator(chunk_size=2000)
    ]
    inp = metrics.SessionInput(
        lines=lines,
        students=[
            metrics.StudentInfo(student_id=student_id, room_id=room_id, name=names[student_id])
            for student_id, room_id, *_ in assignments
        ],
        scope_terms=[str(term) for term in (session.course.scope_terms or []) if str(term).strip()],
        room_topics={room_id: topic for room_id, _name, topic in rooms if topic},
        silence_ms=silence_ms(),
        repeat_window=repeat_window(),
    )
    return inp, names, {room_id: name for room_id, name, _topic in rooms}


def _progress(session_id: int, value: int, callback: Callable[[int], object] | None, *, store: bool) -> None:
    if store:
        SessionAnalytics.objects.filter(session_id=session_id, version__lte=VERSION).update(progress=value)
    if callback is not None:
        callback(value)


def _write(
    *, session_id: int, result: metrics.SessionMetrics, text: summary.Summary | None, final: bool, ended: bool
) -> SessionAnalytics:
    now = timezone.now()
    with transaction.atomic():
        analytics, _ = SessionAnalytics.objects.select_for_update().get_or_create(session_id=session_id)
        if analytics.version > VERSION:
            logger.info("session %s: analytics v%s kept over this v%s", session_id, analytics.version, VERSION)
            return analytics
        if not final and ended and (analytics.participation or {}).get("final") and analytics.version == VERSION:
            return analytics  # a late incremental run never turns a final result provisional
        existing = {row.student_id: row for row in StudentProgress.objects.filter(session_id=session_id)}
        create, update = [], []
        for student_id, m in sorted(result.students.items()):
            row = existing.pop(student_id, None) or StudentProgress(session_id=session_id, student_id=student_id)
            row.talk_time_ms, row.speech_turns, row.text_turns = m.talk_time_ms, m.speech_turns, m.text_turns
            row.questions_asked, row.words, row.hints_needed = m.questions_asked, m.words, m.hints_needed
            row.topics_covered, row.confusion_points = m.topics_covered, m.confusion_points
            row.engagement_score, row.evidence = m.engagement_score, m.evidence
            row.version, row.computed_at = VERSION, now
            (update if row.pk else create).append(row)
        if existing:  # students moved out of every room since the last computation
            StudentProgress.objects.filter(pk__in=[row.pk for row in existing.values()]).delete()
        StudentProgress.objects.bulk_create(create)
        if update:
            StudentProgress.objects.bulk_update(update, PROGRESS_FIELDS)
        analytics.status = SessionAnalytics.Status.READY
        analytics.progress = 100
        analytics.participation = {**result.participation, "final": final, "lines": result.lines}
        analytics.room_comparison = result.rooms
        analytics.confusion_topics = result.confusion_topics
        # An incremental run keeps a model-written summary (it writes only the extractive one).
        keep = not final and analytics.summary and not analytics.summary_offline
        if text is not None and not keep:
            analytics.summary, analytics.summary_offline = text.text, text.offline
        analytics.version, analytics.computed_at = VERSION, now
        analytics.save()
    return analytics


def _kept_without_transcript(session_id: int) -> SessionAnalytics | None:
    """Stored numbers computed from lines that are gone (the retention purge deletes a session's
    transcript and keeps its analytics): kept as they are, ready, stamped with this VERSION so
    reads do not queue them again; there is nothing left to recompute them from. None: no such
    numbers, compute as usual."""
    with transaction.atomic():
        analytics = SessionAnalytics.objects.select_for_update().filter(session_id=session_id).first()
        if analytics is None or not (analytics.participation or {}).get("lines"):
            return None
        if analytics.version <= VERSION:
            analytics.status, analytics.progress, analytics.version = SessionAnalytics.Status.READY, 100, VERSION
            analytics.save(update_fields=["status", "progress", "version"])
    return analytics


def session_analytics_compute(
    *, session_id: int, final: bool = True, progress: Callable[[int], object] | None = None
) -> SessionAnalytics | None:
    """Compute (or recompute) a session's analytics; None for an unknown session.
    `progress(percent)`, if given, is called as the work advances (the row's `progress` too)."""
    session = LiveSession.objects.select_related("course", "tenant").filter(pk=session_id).first()
    if session is None:
        return None
    if final:
        analytics, _ = SessionAnalytics.objects.get_or_create(session_id=session_id)
        if analytics.version > VERSION:
            return analytics
        SessionAnalytics.objects.filter(pk=analytics.pk, version__lte=VERSION).update(
            status=SessionAnalytics.Status.COMPUTING, progress=5
        )
    try:
        inp, names, room_names = session_rows_load(session=session)
        if not inp.lines and (kept := _kept_without_transcript(session_id)) is not None:
            if progress is not None:
                progress(100)
            return kept
        _progress(session_id, 30, progress, store=final)
        result = metrics.session_metrics(inp)
        _progress(session_id, 60, progress, store=final)
        text = summary.session_summary(
            session=session, lines=inp.lines, result=result, names=names, room_names=room_names,
            room_topics=inp.room_topics, terms=inp.scope_terms, use_llm=final,
        )
        if final:  # topics and confusion refined by the tenant's online model, if any (analytics/refine.py)
            refine.session_refine(session=session, rows=inp, result=result, names=names, room_names=room_names)
        _progress(session_id, 90, progress, store=final)
        analytics = _write(
            session_id=session_id, result=result, text=text, final=final,
            ended=session.status == LiveSession.Status.ENDED,
        )
    except Exception:
        logger.exception("session %s: analytics computation failed", session_id)
        if final:
            SessionAnalytics.objects.filter(session_id=session_id, version__lte=VERSION).update(
                status=SessionAnalytics.Status.FAILED
            )
        raise
    if progress is not None:
        progress(100)
    return analytics


def session_analytics_ensure(*, session: LiveSession) -> SessionAnalytics:
    """The stored analytics; none yet, or ready but from an older version: queued (pending).
    Readers (the API, the report page of an ended session) call it, so a session whose
    end-of-class queueing was lost, or that ended before analytics existed, gets computed."""
    analytics = SessionAnalytics.objects.filter(session_id=session.pk).first()
    outdated = (
        analytics is not None and analytics.version < VERSION and analytics.status == SessionAnalytics.Status.READY
    )
    if analytics is None or outdated:
        analytics = session_analytics_queue(session_id=session.pk, final=session.status == LiveSession.Status.ENDED)
    return analytics


def session_analytics_queue(*, session_id: int, final: bool = True) -> SessionAnalytics:
    """Mark a session's analytics pending (unless it is computing) and queue its computation
    once the current transaction commits. The numbers already stored stay readable meanwhile."""
    from analytics.tasks import session_analytics_compute as task

    analytics, created = SessionAnalytics.objects.get_or_create(session_id=session_id)
    if not created and analytics.status != SessionAnalytics.Status.COMPUTING:
        SessionAnalytics.objects.filter(pk=analytics.pk).update(status=SessionAnalytics.Status.PENDING, progress=0)

    def send() -> None:
        try:
            task.delay(session_id, final)
        except Exception:  # a broker that is down: logged; recompute can be asked again
            logger.warning("could not queue analytics for session %s", session_id, exc_info=True)
            # Pending means queued: not queued is failed (the report page stops polling).
            SessionAnalytics.objects.filter(session_id=session_id, status=SessionAnalytics.Status.PENDING).update(
                status=SessionAnalytics.Status.FAILED
            )

    transaction.on_commit(send)
    analytics.refresh_from_db()
    return analytics
