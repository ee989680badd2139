"""The live confusion radar: confusion signals of student lines, grouped by topic across a
session's rooms while it runs, for the professor's monitor only.

The path of a line (docs/architecture.md, "Confusion radar"):

1. sessions/live.py commits a segment and sends `segment_recorded` after the commit;
   `segment_recorded_queue` (connected in AnalyticsConfig.ready) queues student lines.
2. `segment_observe` runs off the request and consumer path: the Celery task
   `analytics.segment_observe` (eager in the embedded default: right after the commit, in the
   thread that wrote the line, a few queries). It finds the line's signals (analytics.confusion: phrases, plus a
   question the same student already asked on the same topic a few lines earlier) and topic (a
   course scope term, else the room's topic so far, else the room's topic), sends one
   `alert.confusion` per signal to the session's monitor group, and records the signals in the
   session's radar state (the Django cache: Redis when REDIS_URL, so every process sees it).
3. `analytics.update` {session_id, radar, alerts, participation, ...} follows each change, at
   most one per ANALYTICS_RADAR_DEBOUNCE_SECONDS per session (the last change is always sent).
   Every ANALYTICS_LIVE_EVERY_LINES student lines the session's participation is recomputed.
4. The monitor's snapshot (sessions.signals.monitor_snapshot) carries the current radar, and
   "clarify for everyone" (sessions.live.session_clarify -> `confusion_clarified`) marks a
   topic clarified.

The radar is a view of the last ANALYTICS_RADAR_WINDOW_MINUTES, not a record: the session's
analytics (analytics.services) recompute confusion from the transcript when it ends.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from asgiref.sync import SyncToAsync, sync_to_async
from django.conf import settings
from django.core.cache import cache
from django.db import close_old_connections
from django.db.models import Subquery
from django.urls import reverse

from analytics import confusion
from sessions import groups
from sessions.models import BreakoutRoom, Speaker, TranscriptSegment
from sessions.realtime import broadcast_on_commit, utc_timestamp

logger = logging.getLogger(__name__)

EVENT_ALERT = "alert.confusion"
EVENT_UPDATE = "analytics.update"
# The radar keeps at most this many signals per session (the window usually holds far fewer).
MAX_SIGNALS = 500
# Alerts listed in `analytics.update` (newest first).
ALERTS_SHOWN = 10
# How many earlier lines of the room give the topic so far and the repeated questions.
CONTEXT_LINES_MIN = 4
EVIDENCE_MAX_CHARS = 160
TEXT_MAX_CHARS = 500
STATE_TTL_SECONDS = 24 * 3600
LOCK_SECONDS = 5
ROOM_CONTEXT_SECONDS = 30

# The periodic participation run, off the consumers' database thread (embedded default).
_compute_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="analytics-live")


def _state_key(session_id: int) -> str:
    return f"analytics:radar:{session_id}"


def _window() -> timedelta:
    return timedelta(minutes=max(1, int(settings.ANALYTICS_RADAR_WINDOW_MINUTES)))


def _parse(at: str) -> datetime:
    return datetime.fromisoformat(at)


# --- queueing -------------------------------------------------------------------------------------


def segment_recorded_queue(
    sender: Any, *, segment_id: int, session_id: int, room_id: int | None, speaker_kind: str, **kwargs: Any
) -> None:
    """`sessions.signals.segment_recorded` receiver: a student's line in a room is observed by
    the Celery task `analytics.segment_observe` (a worker with a broker; in the embedded default
    the eager task runs here, after the commit, in the thread that wrote the line). A broker that
    is down is logged: the radar misses a line, nothing else does."""
    if speaker_kind != Speaker.STUDENT or room_id is None:
        return
    from analytics.tasks import segment_observe_task

    try:
        segment_observe_task.apply_async(args=[segment_id], kwargs={"room_id": room_id})
    except Exception:
        if settings.CELERY_TASK_ALWAYS_EAGER:
            raise
        logger.warning("could not queue the radar's observation of segment %s", segment_id, exc_info=True)


# --- detection --------------------------------------------------------------------------------------


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def line_observations(
    *, text: str, speaker_id: int | None, earlier: list[TranscriptSegment], terms: list[str], room_topic: str
) -> tuple[str, list[confusion.LineSignal]]:
    """The topic of a student's line and its confusion signals (at most one of each kind).

    `earlier`: the room's lines before it, oldest first (any speaker). Their topics, carried
    forward, give the room's topic so far; a question by the same student on the same topic among
    them makes this one a repeated question.
    """
    # The room's topic is a term a line can name, as in the session's computation (analytics.metrics).
    terms = list(dict.fromkeys(t.strip() for t in [*terms, room_topic] if t and t.strip()))
    topic_so_far = ""
    asked: list[tuple[int | None, str]] = []
    for line in earlier:
        named = confusion.line_topics(line.text, terms=terms)
        line_topic = confusion.line_topic(line.text, terms=terms, room_topic=room_topic, previous=topic_so_far, named=named)
        if named:
            topic_so_far = named[0]
        if line.speaker_kind == Speaker.STUDENT and _is_question(line.text):
            asked.append((line.speaker_user_id, line_topic))
    topic = confusion.line_topic(text, terms=terms, room_topic=room_topic, previous=topic_so_far)
    found: list[confusion.LineSignal] = []
    phrases = _student_line_signals(text)
    if phrases:
        found.append(confusion.LineSignal(confusion.PHRASE, _clip(phrases[0].evidence, EVIDENCE_MAX_CHARS)))
    if (
        speaker_id is not None
        and topic != confusion.GENERAL_TOPIC
        and _is_question(text)
        and (speaker_id, topic) in asked
    ):
        found.append(confusion.LineSignal(confusion.REPEATED_QUESTION, _clip(text, EVIDENCE_MAX_CHARS)))
    return topic, found


def _student_line_signals(text: str) -> list[confusion.LineSignal]:
    """The phrases the session's computation counts (analytics.metrics), so radar and report agree."""
    from analytics.metrics import student_line_signals

    return student_line_signals(text)


def _is_question(text: str) -> bool:
    from analytics.services import is_question

    return is_question(text)


def line_url(*, room_id: int, seq: int) -> str:
    """The line on its room's page (`#seq-<n>` anchors, templates/sessions/_live_line.html)."""
    return f"{reverse('room-detail', args=[room_id])}#seq-{seq}"


def _room_context(room_id: int) -> dict[str, Any] | None:
    """What the radar needs of a room (name, topic, session, the course's scope terms), cached
    for ROOM_CONTEXT_SECONDS: a renamed room or new terms show within that."""
    key = f"analytics:radar:room:{room_id}"
    context = cache.get(key)
    if context is None:
        room = (
            BreakoutRoom.objects.filter(pk=room_id)
            .values("name", "topic", "session_id", "session__course__scope_terms")
            .first()
        )
        if room is None:
            return None
        terms = room.pop("session__course__scope_terms") or []
        context = {**room, "terms": [term for term in terms if isinstance(term, str)]}
        cache.set(key, context, timeout=ROOM_CONTEXT_SECONDS)
    return context


def segment_observe(*, segment_id: int, room_id: int | None = None) -> list[dict[str, Any]]:
    """Observe one committed student line: `alert.confusion` to the monitor for each signal, the
    radar updated, participation recomputed every ANALYTICS_LIVE_EVERY_LINES lines. Idempotent per
    (segment, signal): a redelivered task counts no signal twice. Returns the alerts sent.

    One query (the line and the room's lines before it) and the room's cached context; the
    radar's state is locked and written only when the line has a signal."""
    if room_id is None:
        room_id = TranscriptSegment.objects.filter(pk=segment_id).values_list("room_id", flat=True).first()
        if room_id is None:
            return []
    within = max(CONTEXT_LINES_MIN, int(settings.ANALYTICS_REPEAT_WITHIN_LINES))
    lines = list(
        TranscriptSegment.objects.filter(
            room_id=room_id, is_final=True,
            seq__lte=Subquery(TranscriptSegment.objects.filter(pk=segment_id).values("seq")[:1]),
        )
        .order_by("-seq")
        .only("seq", "speaker_kind", "speaker_user_id", "speaker_name", "text", "created_at", "session_id")[: within + 1]
    )
    if not lines or lines[0].pk != segment_id or lines[0].speaker_kind != Speaker.STUDENT:
        return []
    segment, earlier = lines[0], lines[:0:-1]  # the line, and those before it oldest first
    room = _room_context(room_id)
    if room is None:
        return []
    session_id = segment.session_id
    topic, found = line_observations(
        text=segment.text, speaker_id=segment.speaker_user_id, earlier=earlier, terms=room["terms"],
        room_topic=room["topic"],
    )
    at = utc_timestamp(segment.created_at)
    alerts = [
        {
            "session_id": session_id,
            "room_id": room_id,
            "room_name": room["name"],
            "student": {"id": segment.speaker_user_id, "name": segment.speaker_name},
            "topic": topic,
            "signal": signal.signal,
            "signal_label": confusion.signal_label(signal.signal),
            "evidence": signal.evidence,
            "seq": segment.seq,
            "segment_id": segment.pk,
            "text": _clip(segment.text, TEXT_MAX_CHARS),
            "at": at,
            "line_url": line_url(room_id=room_id, seq=segment.seq),
        }
        for signal in found
    ]
    new: list[dict[str, Any]] = []
    if alerts:
        with _state_locked(session_id) as state:
            new = [a for a in alerts if (a["segment_id"], a["signal"]) not in _recorded(state)]
            state["signals"] = _pruned([*state["signals"], *new])
    for alert in new:
        broadcast_on_commit(groups=[groups.session_monitor_group(session_id)], event_type=EVENT_ALERT, data=alert)
    if new:
        radar_publish(session_id=session_id)
    if _line_counted(session_id) % max(1, int(settings.ANALYTICS_LIVE_EVERY_LINES)) == 0:
        participation_refresh(session_id=session_id)
    return new


def _line_counted(session_id: int) -> int:
    """The session's student lines seen so far, this one included (an atomic cache counter)."""
    key = f"{_state_key(session_id)}:lines"
    cache.add(key, 0, timeout=STATE_TTL_SECONDS)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=STATE_TTL_SECONDS)
        return 1


def _recorded(state: dict[str, Any]) -> set[tuple[int, str]]:
    return {(s["segment_id"], s["signal"]) for s in state["signals"]}


def _pruned(signals: list[dict[str, Any]], now: datetime | None = None) -> list[dict[str, Any]]:
    oldest = (now or datetime.now(UTC)) - _window()
    kept = [s for s in signals if _parse(s["at"]) >= oldest]
    return kept[-MAX_SIGNALS:]


def participation_refresh(*, session_id: int) -> None:
    """Recompute the session's participation and send it in an `analytics.update`.

    In the embedded default (ANALYTICS_LIVE_COMPUTE_IN_THREAD) on a background thread: a run on
    an hour-long class costs ~150 ms of CPU, which would otherwise hold the consumers' shared
    database thread; the update is then sent from the server's loop. In a Celery worker, here."""
    if settings.ANALYTICS_LIVE_COMPUTE_IN_THREAD:
        _compute_executor.submit(_participation_in_thread, session_id, _server_loop())
        return
    _participation_store(session_id)
    radar_publish(session_id=session_id, force=True)


def _participation_in_thread(session_id: int, loop: asyncio.AbstractEventLoop | None) -> None:
    try:
        _participation_store(session_id)
        _later(0, session_id, loop=loop)
    except Exception:
        logger.exception("live participation of session %s failed", session_id)
    finally:
        close_old_connections()


def _participation_store(session_id: int) -> None:
    participation = _participation_compute(session_id)
    if participation is not None:
        with _state_locked(session_id) as state:
            state["participation"] = participation


def _participation_compute(session_id: int) -> dict[str, Any] | None:
    """The session's analytics recomputed mid-session (final=False where the service takes it);
    its participation, or None when it failed (logged: the radar goes on)."""
    from analytics import services

    compute = services.session_analytics_compute
    try:
        if "final" in inspect.signature(compute).parameters:
            result = compute(session_id=session_id, final=False)
        else:
            result = compute(session_id=session_id)
    except Exception:
        logger.exception("live analytics of session %s failed", session_id)
        return None
    participation = getattr(result, "participation", None)
    return participation if isinstance(participation, dict) else None


# --- state ----------------------------------------------------------------------------------------


def _empty_state() -> dict[str, Any]:
    return {"signals": [], "clarified": {}, "participation": None}


def radar_state(session_id: int) -> dict[str, Any]:
    state = cache.get(_state_key(session_id))
    return {**_empty_state(), **state} if isinstance(state, dict) else _empty_state()


@contextmanager
def _state_locked(session_id: int) -> Iterator[dict[str, Any]]:
    """Read-modify-write of a session's radar under a cache lock (processes and Celery workers
    share it). A lock not had within a second is ignored: a lost update beats a stuck radar."""
    lock = f"{_state_key(session_id)}:lock"
    token = f"{threading.get_ident()}:{time.monotonic_ns()}"
    deadline = time.monotonic() + 1.0
    held = cache.add(lock, token, timeout=LOCK_SECONDS)
    while not held and time.monotonic() < deadline:
        time.sleep(0.01)
        held = cache.add(lock, token, timeout=LOCK_SECONDS)
    if not held:
        logger.warning("radar of session %s: lock not acquired, updating anyway", session_id)
    try:
        state = radar_state(session_id)
        yield state
        cache.set(_state_key(session_id), state, timeout=STATE_TTL_SECONDS)
    finally:
        if held and cache.get(lock) == token:
            cache.delete(lock)


def radar_rows(state: dict[str, Any], *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Signals in the window grouped by topic, most signals first: [{topic, count, rooms:
    [{room_id, name, count}], students: [{id, name}], last_at, seqs, clarified, since_clarified}]."""
    signals = _pruned(state["signals"], now)
    by_topic: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for signal in signals:
        by_topic[signal["topic"]].append(signal)
    rows = []
    for topic, items in by_topic.items():
        rooms: dict[int, dict[str, Any]] = {}
        students: dict[Any, dict[str, Any]] = {}
        for item in items:
            room = rooms.setdefault(item["room_id"], {"room_id": item["room_id"], "name": item["room_name"], "count": 0})
            room["count"] += 1
            students.setdefault(item["student"]["id"] or item["student"]["name"], item["student"])
        clarified = state["clarified"].get(topic)
        rows.append(
            {
                "topic": topic,
                "count": len(items),
                "rooms": sorted(rooms.values(), key=lambda r: (-r["count"], r["name"])),
                "students": list(students.values()),
                "last_at": max(item["at"] for item in items),
                "seqs": sorted({item["seq"] for item in items}),
                "clarified": clarified,
                "since_clarified": (
                    sum(1 for item in items if _parse(item["at"]) > _parse(clarified["at"])) if clarified else None
                ),
            }
        )
    rows.sort(key=lambda r: r["last_at"], reverse=True)
    rows.sort(key=lambda r: r["count"], reverse=True)  # stable: most signals, then the latest
    return rows


def radar_snapshot(*, session_id: int) -> dict[str, Any]:
    """The `analytics.update` data of a session: {session_id, window_minutes, radar, alerts
    (newest first), participation (the last live computation, or null), at}."""
    state = radar_state(session_id)
    now = datetime.now(UTC)
    alerts = [
        {**alert, "signal_label": confusion.signal_label(alert.get("signal"))}  # also for alerts stored before labels
        for alert in reversed(_pruned(state["signals"], now))
    ][:ALERTS_SHOWN]
    return {
        "session_id": session_id,
        "window_minutes": int(_window().total_seconds() // 60),
        "radar": radar_rows(state, now=now),
        "alerts": alerts,
        "participation": state["participation"],
        "at": utc_timestamp(now),
    }


# --- publishing -------------------------------------------------------------------------------------


def _send_update(session_id: int) -> None:
    broadcast_on_commit(
        groups=[groups.session_monitor_group(session_id)], event_type=EVENT_UPDATE,
        data=radar_snapshot(session_id=session_id),
    )


def radar_publish(*, session_id: int, force: bool = False) -> None:
    """`analytics.update` to the monitor: now, unless one went out within the debounce; then
    once when it ends (whatever changed meanwhile is in it). `force`: now in any case."""
    debounce = float(settings.ANALYTICS_RADAR_DEBOUNCE_SECONDS)
    if force or debounce <= 0:
        _send_update(session_id)
        if debounce > 0:
            cache.set(f"{_state_key(session_id)}:sent", 1, timeout=max(1.0, debounce))
        return
    # The Redis cache keeps whole seconds (under 1 s rounds to 0: no debounce at all): at least 1.
    if cache.add(f"{_state_key(session_id)}:sent", 1, timeout=max(1.0, debounce)):
        _send_update(session_id)
        return
    if cache.add(f"{_state_key(session_id)}:pending", 1, timeout=debounce * 5):
        _later(debounce, session_id)


def _server_loop() -> asyncio.AbstractEventLoop | None:
    """The server's event loop when called from a consumer's (or ASGI view's) worker thread."""
    loop = getattr(SyncToAsync.threadlocal, "main_event_loop", None)
    return loop if loop is not None and loop.is_running() else None


def _later(delay: float, session_id: int, *, loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Run `_flush` after `delay`. From a consumer's worker thread (the embedded default), or
    with its `loop`, on the server's event loop, where the in-memory channel layer lives: a send
    from another loop would never reach its sockets. Elsewhere (a Celery worker) in a timer."""
    loop = loop or _server_loop()
    if loop is not None and loop.is_running():

        def schedule() -> None:
            loop.call_later(delay, lambda: loop.create_task(sync_to_async(_flush, thread_sensitive=False)(session_id)))

        loop.call_soon_threadsafe(schedule)
        return
    timer = threading.Timer(delay, _flush, args=[session_id])
    timer.daemon = True
    timer.start()


def _flush(session_id: int) -> None:
    """The trailing `analytics.update` of a debounce (reads the cache only, no database)."""
    try:
        cache.delete(f"{_state_key(session_id)}:pending")
        cache.set(f"{_state_key(session_id)}:sent", 1, timeout=float(settings.ANALYTICS_RADAR_DEBOUNCE_SECONDS))
        _send_update(session_id)
    except Exception:
        logger.warning("radar of session %s: the delayed update failed", session_id, exc_info=True)


# --- receivers of the sessions app's hooks ----------------------------------------------------------------


def confusion_clarified_mark(
    sender: Any, *, session_id: int, topic: str, by: dict[str, Any], at: str, text: str = "", **kwargs: Any
) -> None:
    """`confusion_clarified`: the radar shows the topic clarified (at, by), at once."""
    with _state_locked(session_id) as state:
        state["clarified"] = {**state["clarified"], confusion.topic_key(topic): {"at": at, "by": by, "text": text}}
    radar_publish(session_id=session_id, force=True)


def monitor_snapshot_radar(sender: Any, *, session_id: int, **kwargs: Any) -> list[tuple[str, Any]]:
    """`monitor_snapshot`: a (re)connecting monitor gets the current radar, when it shows anything
    (an empty radar is what the client starts from)."""
    snapshot = radar_snapshot(session_id=session_id)
    if not (snapshot["radar"] or snapshot["alerts"] or snapshot["participation"]):
        return []
    return [(EVENT_UPDATE, snapshot)]
