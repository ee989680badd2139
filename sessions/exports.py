"""Transcripts as files: WebVTT (captions), CSV (spreadsheets) and JSON (programs).

One session or one room; lines in `seq` order. Times are offsets from the session's start. A typed
line has no duration of its own, so its caption stays on screen for a reading time (about 3 words
a second, 1.5 s to 8 s), cut short where the next line of the same room begins.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

from sessions.models import BreakoutRoom, LiveSession, TranscriptSegment

FORMATS = {
    "vtt": "text/vtt; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
}
CSV_COLUMNS = [
    "seq", "room", "speaker", "speaker_kind", "text", "source", "start_ms", "end_ms", "provider",
    "model", "created_at",
]
MIN_CUE_MS = 1500
MAX_CUE_MS = 8000
MS_PER_WORD = 330


@dataclass(frozen=True, slots=True)
class Line:
    seq: int
    room: str
    room_id: int | None
    speaker: str
    speaker_kind: str
    text: str
    source: str
    start_ms: int
    end_ms: int
    provider: str
    model: str
    created_at: Any


def transcript_lines(*, session: LiveSession, room: BreakoutRoom | None = None) -> list[Line]:
    """The lines of a session (or one room), in seq order: one query."""
    rows = TranscriptSegment.objects.filter(session=session, is_final=True)
    if room is not None:
        rows = rows.filter(room=room)
    rows = rows.select_related("room", "message").order_by("seq")
    return [
        Line(
            seq=s.seq, room=s.room.name if s.room_id else "Main room", room_id=s.room_id,
            speaker=s.speaker_name, speaker_kind=s.speaker_kind, text=s.text, source=s.source,
            start_ms=s.start_ms, end_ms=s.end_ms, provider=s.provider,
            model=s.message.model if s.message_id else "", created_at=s.created_at,
        )
        for s in rows
    ]


def _timestamp(ms: int) -> str:
    hours, rest = divmod(max(0, ms), 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}"


def _cue_text(text: str) -> str:
    # A cue ends at a blank line and "-->" starts timing: neither may appear inside a cue.
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return "\n".join(line for line in text.splitlines() if line.strip())


def cue_times(lines: list[Line]) -> list[tuple[int, int]]:
    """(start, end) of each line's cue: its own end if it has a duration, else a reading time,
    never past the next line of the same room."""
    next_start: dict[int, int] = {}
    times: list[tuple[int, int]] = [(0, 0)] * len(lines)
    for index in range(len(lines) - 1, -1, -1):
        line = lines[index]
        key = line.room_id or 0
        start = line.start_ms
        if line.end_ms > start:
            end = line.end_ms
        else:
            reading = len(line.text.split()) * MS_PER_WORD
            end = start + min(MAX_CUE_MS, max(MIN_CUE_MS, reading))
            following = next_start.get(key)
            if following is not None and start < following < end:
                end = following
        times[index] = (start, max(end, start + 1))
        next_start[key] = start
    return times


def to_vtt(lines: list[Line], *, title: str, with_room: bool = True) -> str:
    out = ["WEBVTT - " + " ".join(title.split()).replace("-->", "->"), ""]
    for line, (start, end) in zip(lines, cue_times(lines), strict=True):
        out.append(f"{line.seq}")
        out.append(f"{_timestamp(start)} --> {_timestamp(end)}")
        speaker = line.speaker.replace("<", "").replace(">", "")
        prefix = f"[{line.room}] " if with_room else ""
        out.append(f"<v {speaker}>{prefix}{_cue_text(line.text) or '…'}")
        out.append("")
    return "\n".join(out)


def to_csv(lines: Iterable[Line]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for line in lines:
        writer.writerow(
            [
                line.seq, line.room, line.speaker, line.speaker_kind, _csv_safe(line.text), line.source,
                line.start_ms, line.end_ms, line.provider, line.model, line.created_at.isoformat(),
            ]
        )
    return buffer.getvalue()


def _csv_safe(text: str) -> str:
    """A cell a spreadsheet would run as a formula ("=...", "+...") is quoted with a "'"."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def to_json(lines: list[Line], *, session: LiveSession, room: BreakoutRoom | None) -> str:
    document = {
        "session": {"id": session.pk, "title": session.title, "course": session.course_id,
                    "started_at": session.started_at, "ended_at": session.ended_at},
        "room": {"id": room.pk, "name": room.name, "topic": room.topic} if room else None,
        "segments": [
            {
                "seq": line.seq, "room_id": line.room_id, "room": line.room, "speaker": line.speaker,
                "speaker_kind": line.speaker_kind, "text": line.text, "source": line.source,
                "start_ms": line.start_ms, "end_ms": line.end_ms, "provider": line.provider,
                "model": line.model, "created_at": line.created_at,
            }
            for line in lines
        ],
    }
    return json.dumps(document, cls=DjangoJSONEncoder, ensure_ascii=False, indent=1)


def transcript_export(*, session: LiveSession, room: BreakoutRoom | None, fmt: str) -> tuple[str, str, str]:
    """(body, content type, file name) of a transcript export. ValueError for an unknown format."""
    if fmt not in FORMATS:
        raise ValueError(fmt)
    lines = transcript_lines(session=session, room=room)
    name = f"session-{session.pk}" + (f"-room-{room.number}" if room else "")
    title = session.title + (f" / {room.name}" if room else "")
    if fmt == "vtt":
        body = to_vtt(lines, title=title, with_room=room is None)
    elif fmt == "csv":
        body = to_csv(lines)
    else:
        body = to_json(lines, session=session, room=room)
    return body, FORMATS[fmt], f"{name}.{fmt}"
