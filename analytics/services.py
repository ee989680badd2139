"""Computing what happened in a session, from its transcript.

The first version counts what the transcript says plainly, per student: text and speech turns,
words, questions asked, talk time (speech duration), and the session's participation
distribution. Topics, confusion points and the engagement score are the next version's.
Recomputing replaces the rows (idempotent).
"""

from __future__ import annotations

import re
from collections import defaultdict

from django.db import transaction
from django.utils import timezone

from analytics.models import SessionAnalytics, StudentProgress
from sessions.models import LiveSession, RoomAssignment, Speaker, TranscriptSegment

VERSION = 1
_QUESTION = re.compile(
    r"\?\s*$|^(what|why|how|when|where|which|who|is|are|can|could|should|does|do|did|would)\b", re.IGNORECASE
)
_WORD = re.compile(r"\w+(?:'\w+)?")


def is_question(text: str) -> bool:
    return any(_QUESTION.search(line.strip()) for line in text.splitlines() if line.strip())


def session_analytics_compute(*, session_id: int) -> SessionAnalytics | None:
    session = LiveSession.objects.filter(pk=session_id).first()
    if session is None:
        return None
    student_of_user = dict(
        RoomAssignment.objects.filter(session_id=session_id).values_list("student__user_id", "student_id")
    )
    stats: dict[int, dict] = defaultdict(
        lambda: {"text_turns": 0, "speech_turns": 0, "words": 0, "questions": 0, "talk_ms": 0, "seqs": []}
    )
    rows = TranscriptSegment.objects.filter(
        session_id=session_id, speaker_kind=Speaker.STUDENT, is_final=True
    ).values_list("speaker_user_id", "text", "source", "start_ms", "end_ms", "seq", "room_id")
    per_room: dict[int, int] = defaultdict(int)
    for user_id, text, source, start_ms, end_ms, seq, room_id in rows:
        student_id = student_of_user.get(user_id)
        if student_id is None:
            continue
        row = stats[student_id]
        if source == TranscriptSegment.Source.SPEECH:
            row["speech_turns"] += 1
            row["talk_ms"] += max(0, end_ms - start_ms)
        else:
            row["text_turns"] += 1
        row["words"] += len(_WORD.findall(text))
        row["questions"] += is_question(text)
        row["seqs"].append(seq)
        if room_id:
            per_room[room_id] += 1
    now = timezone.now()
    with transaction.atomic():
        StudentProgress.objects.filter(session_id=session_id).delete()
        StudentProgress.objects.bulk_create(
            [
                StudentProgress(
                    session_id=session_id, student_id=student_id,
                    text_turns=stats[student_id]["text_turns"], speech_turns=stats[student_id]["speech_turns"],
                    words=stats[student_id]["words"], questions_asked=stats[student_id]["questions"],
                    talk_time_ms=stats[student_id]["talk_ms"], evidence={"turns": stats[student_id]["seqs"]},
                    version=VERSION, computed_at=now,
                )
                for student_id in sorted(set(student_of_user.values()))
            ]
        )
        turns = sorted(stats[s]["text_turns"] + stats[s]["speech_turns"] for s in set(student_of_user.values()))
        analytics, _ = SessionAnalytics.objects.update_or_create(
            session_id=session_id,
            defaults={
                "status": SessionAnalytics.Status.READY, "progress": 100, "version": VERSION, "computed_at": now,
                "participation": {
                    "students": len(turns), "silent": sum(1 for t in turns if t == 0), "turns": turns,
                },
                "room_comparison": [{"room_id": room_id, "student_turns": n} for room_id, n in sorted(per_room.items())],
            },
        )
    return analytics
