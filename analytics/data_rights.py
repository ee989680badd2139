"""Student data rights (FERPA/GDPR): export what we hold about a student, or erase it.

Export: the student's profile, enrollments, the sessions they took part in with the transcript of
their room (their own lines in full; other students' lines as "[redacted]" by "another student";
tutor, professor and system lines kept, other students' names in them replaced), their practice
conversations with the tutor's replies, their progress rows and their provider usage; as a zip,
with the audio files of their own utterances when the tenant kept audio.

Erase: "anonymise" keeps the account as an empty shell (no name, username, e-mail, password;
inactive) so the rooms' transcripts stay readable as "Erased student"; "delete" then removes the
user and everything hanging off them (student, enrollments, room places). Both replace the text
of their lines with "[erased]", delete their audio files, practice conversations and progress,
and remove their names from the texts other rows keep (tutor replies, other students' lines,
session summaries, admin history, login records). Both leave a `DataRightsAudit` row that names
the student only by id.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from pathlib import PurePosixPath
from typing import Any

from django.apps import apps
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from analytics.models import DataRightsAudit, SessionAnalytics, StudentProgress, UsageEvent
from analytics.retention import audio_files_delete
from courses.exceptions import DomainError, Forbidden, NotFound
from courses.models import Enrollment, Student, User
from sessions.models import (
    Conversation,
    LiveSession,
    Message,
    RoomAssignment,
    Speaker,
    TranscriptSegment,
)

REDACTED = "[redacted]"
ANOTHER_STUDENT = "another student"
ERASED = "[erased]"
ERASED_NAME = "Erased student"
ERASE_MODES = ("anonymise", "delete")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _names_pattern(names: Iterable[str]) -> re.Pattern | None:
    """Whole-word, case-insensitive alternation of these names (longest first); None if none."""
    names = sorted({n.strip() for n in names if n and len(n.strip()) >= 2}, key=len, reverse=True)
    if not names:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(n) for n in names) + r")(?!\w)", re.IGNORECASE)


def _user_names(user: User, student: Student | None = None) -> list[str]:
    names = [user.first_name, user.last_name, user.get_full_name(), user.username, user.email]
    if student is not None:
        names.append(student.preferred_name)
    return names


def _student_sessions(student: Student) -> dict[int, int | None]:
    """Session id -> the student's room id (None: spoke only in the main room)."""
    rooms = dict(RoomAssignment.objects.filter(student=student).values_list("session_id", "room_id"))
    for session_id in (
        TranscriptSegment.objects.filter(speaker_user_id=student.user_id).values_list("session_id", flat=True).distinct()
    ):
        rooms.setdefault(session_id, None)
    return rooms


def student_get_for_data_rights(*, user: User, student_id: int) -> Student:
    """The student a data-rights request is about: tenant staff of the student's tenant (or a
    superuser) only. Forbidden for professors and students; NotFound for another tenant's."""
    if not (user.is_superuser or (user.role == User.Role.STAFF and user.tenant_id is not None)):
        raise Forbidden("Only your institution's staff can export or erase a student's data.")
    students = Student.objects.select_related("user", "tenant")
    if not user.is_superuser:
        students = students.filter(tenant_id=user.tenant_id)
    student = students.filter(pk=student_id).first()
    if student is None:
        raise NotFound("No such student.")
    return student


# --- export -------------------------------------------------------------------------------------


def _export_data(student: Student) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The export, and the (storage name, name in the zip) of the student's audio files."""
    user = student.user
    audio: list[tuple[str, str]] = []
    rooms = _student_sessions(student)
    sessions = LiveSession.objects.filter(pk__in=list(rooms)).select_related("course").order_by("started_at", "pk")

    # Other people's names that may appear in the lines kept (tutor replies quote students).
    session_ids = list(rooms)
    spoke = TranscriptSegment.objects.filter(session_id__in=session_ids, speaker_kind=Speaker.STUDENT)
    others = User.objects.filter(
        Q(student__room_assignments__session_id__in=session_ids) | Q(pk__in=spoke.values("speaker_user_id"))
    ).exclude(pk=user.pk).select_related("student").distinct()
    other_names = _names_pattern(
        n for other in others for n in _user_names(other, getattr(other, "student", None))
    )
    own_names = {n.lower() for n in _user_names(user, student) if n}

    def kept(text: str) -> str:
        if other_names is None:
            return text
        return other_names.sub(lambda m: m.group(0) if m.group(0).lower() in own_names else ANOTHER_STUDENT, text)

    def line(segment: TranscriptSegment) -> dict[str, Any]:
        row: dict[str, Any] = {"seq": segment.seq, "at": _iso(segment.created_at), "source": segment.source}
        if segment.speaker_user_id == user.pk:
            row.update(speaker=segment.speaker_name, speaker_kind="you", text=segment.text)
            if segment.audio:
                in_zip = f"audio/{segment.pk}-{PurePosixPath(segment.audio.name).name}"
                audio.append((segment.audio.name, in_zip))
                row["audio"] = in_zip
        elif segment.speaker_kind == Speaker.STUDENT:
            row.update(speaker=ANOTHER_STUDENT, speaker_kind=Speaker.STUDENT, text=REDACTED)
        else:
            row.update(speaker=kept(segment.speaker_name), speaker_kind=segment.speaker_kind, text=kept(segment.text))
        return row

    session_rows = []
    for session in sessions:
        room_id = rooms[session.pk]
        segments = TranscriptSegment.objects.filter(session=session).filter(
            Q(room__isnull=True) | Q(room_id=room_id) | Q(speaker_user_id=user.pk)
        ).order_by("seq")
        session_rows.append({
            "id": session.pk, "title": session.title, "course": session.course.code,
            "started_at": _iso(session.started_at), "ended_at": _iso(session.ended_at), "room_id": room_id,
            "transcript": [line(s) for s in segments.iterator()],
        })

    def message_row(message: Message, row: dict[str, Any]) -> dict[str, Any]:
        """A message's row, with its source and (their own spoken question's) audio file."""
        row["source"] = message.source
        if message.audio and message.author_id == user.pk:
            in_zip = f"audio/m{message.pk}-{PurePosixPath(message.audio.name).name}"
            audio.append((message.audio.name, in_zip))
            row["audio"] = in_zip
        return row

    conversations = []
    for conversation in Conversation.objects.filter(student=student).select_related("course").order_by("created_at"):
        conversations.append({
            "id": conversation.pk, "course": conversation.course.code, "title": conversation.title,
            "created_at": _iso(conversation.created_at),
            "messages": [
                message_row(m, {"seq": m.seq, "role": m.role, "text": m.text, "at": _iso(m.created_at)})
                for m in conversation.messages.order_by("seq", "pk")
            ],
        })

    data = {
        "generated_at": _iso(timezone.now()),
        "profile": {
            "student_id": student.pk, "user_id": user.pk, "username": user.username,
            "first_name": user.first_name, "last_name": user.last_name, "email": user.email,
            "preferred_name": student.preferred_name, "student_number": student.student_number,
            "institution": student.tenant.name, "date_joined": _iso(user.date_joined),
            "last_login": _iso(user.last_login),
        },
        "enrollments": [
            {"course": e.course.code, "title": e.course.title, "status": e.status, "since": _iso(e.created_at)}
            for e in Enrollment.objects.filter(student=student).select_related("course")
        ],
        "sessions": session_rows,
        # Their own lines kept as messages of their rooms' tutor conversations.
        "room_messages": [
            message_row(m, {"session_id": m.conversation.session_id, "seq": m.seq, "text": m.text, "at": _iso(m.created_at)})
            for m in Message.objects.filter(author_id=user.pk).exclude(conversation__student=student)
            .select_related("conversation").order_by("created_at", "pk")
        ],
        "practice_conversations": conversations,
        "progress": [
            {
                "session_id": p.session_id, "talk_time_ms": p.talk_time_ms, "speech_turns": p.speech_turns,
                "text_turns": p.text_turns, "questions_asked": p.questions_asked, "words": p.words,
                "hints_needed": p.hints_needed, "topics_covered": p.topics_covered,
                "confusion_points": p.confusion_points, "engagement_score": p.engagement_score,
            }
            for p in StudentProgress.objects.filter(student=student)
        ],
        "usage": [
            {
                "at": _iso(u.created_at), "kind": u.kind, "provider": u.provider, "model": u.model,
                "prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
                "units": str(u.units), "cost": str(u.cost),
            }
            for u in UsageEvent.objects.filter(user=user).order_by("created_at")
        ],
    }
    return data, audio


def _audit(*, student: Student, by: User | None, action: str, counts: dict) -> DataRightsAudit:
    return DataRightsAudit.objects.create(
        tenant_id=student.tenant_id, student_id=student.pk, user_id=student.user_id, action=action,
        by=by, by_username=getattr(by, "username", "") or "", counts=counts,
    )


def _export_counts(data: dict) -> dict[str, int]:
    return {
        "sessions": len(data["sessions"]), "conversations": len(data["practice_conversations"]),
        "progress": len(data["progress"]), "usage": len(data["usage"]),
    }


def student_data_export(*, student: Student, by: User | None) -> dict[str, Any]:
    """Everything we hold about `student` as plain JSON-ready data (see the module docstring)."""
    data, _ = _export_data(student)
    _audit(student=student, by=by, action=DataRightsAudit.Action.EXPORT, counts=_export_counts(data))
    return data


def student_data_export_zip(*, student: Student, by: User | None) -> bytes:
    """The export as `export.json` in a zip, with the student's own audio files under audio/."""
    data, audio = _export_data(student)
    storage = TranscriptSegment._meta.get_field("audio").storage
    buffer = io.BytesIO()
    files = 0
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, in_zip in audio:
            try:
                with storage.open(name, "rb") as handle:
                    archive.writestr(in_zip, handle.read())
                files += 1
            except OSError:
                data.setdefault("missing_audio", []).append(in_zip)
        archive.writestr("export.json", json.dumps(data, indent=2, ensure_ascii=False, default=_json_default))
    _audit(
        student=student, by=by, action=DataRightsAudit.Action.EXPORT_ZIP,
        counts={**_export_counts(data), "audio_files": files},
    )
    return buffer.getvalue()


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


# --- erase --------------------------------------------------------------------------------------


def _scrub_json(value: Any, pattern: re.Pattern) -> Any:
    if isinstance(value, str):
        return pattern.sub(ERASED, value)
    if isinstance(value, list):
        return [_scrub_json(v, pattern) for v in value]
    if isinstance(value, dict):
        return {k: _scrub_json(v, pattern) for k, v in value.items()}
    return value


def _scrub_rows(queryset, fields: list[str], pattern: re.Pattern, needles: list[str]) -> int:
    """Replace the names in these text fields of the rows that mention one; rows changed."""
    match = Q()
    for field in fields:
        for needle in needles:
            match |= Q(**{f"{field}__icontains": needle})
    changed = []
    for row in queryset.filter(match).only("pk", *fields).iterator(chunk_size=500):
        before = [getattr(row, f) for f in fields]
        for field in fields:
            setattr(row, field, pattern.sub(ERASED, getattr(row, field)))
        if before != [getattr(row, f) for f in fields]:
            changed.append(row)
    if changed:
        queryset.model.objects.bulk_update(changed, fields, batch_size=500)
    return len(changed)


def student_data_erase(*, student: Student, by: User | None, mode: str = "anonymise") -> DataRightsAudit:
    """Erase a student's personal data; "anonymise" keeps an empty account, "delete" removes it."""
    if mode not in ERASE_MODES:
        raise DomainError(
            'mode is "anonymise" or "delete".', code="invalid", fields={"mode": [f"One of: {', '.join(ERASE_MODES)}."]}
        )
    user = student.user
    needles = sorted({n.strip() for n in _user_names(user, student) if n and len(n.strip()) >= 2})
    pattern = _names_pattern(needles)
    rooms = _student_sessions(student)
    counts: dict[str, int] = {}
    with transaction.atomic():
        own = TranscriptSegment.objects.filter(speaker_user_id=user.pk)
        audio = list(own.exclude(audio="").values_list("audio", flat=True))
        counts["lines"] = own.update(text=ERASED, speaker_name=ERASED_NAME, audio="")
        # Their spoken questions' audio: in practice conversations (deleted below) and elsewhere.
        own_messages = Message.objects.filter(Q(author_id=user.pk) | Q(conversation__student=student))
        audio += list(own_messages.exclude(audio="").values_list("audio", flat=True))
        counts["messages"] = Message.objects.filter(author_id=user.pk).exclude(conversation__student=student).update(
            text=ERASED, citations=[], audio=""
        )
        practice = Conversation.objects.filter(student=student)
        counts["conversations"] = practice.count()
        practice.delete()
        counts["progress"] = StudentProgress.objects.filter(student=student).delete()[0]
        counts["audio_files"] = len(audio)

        scrubbed = 0
        if pattern is not None:
            scrubbed += _scrub_rows(
                TranscriptSegment.objects.filter(session_id__in=list(rooms)), ["text", "speaker_name"], pattern, needles
            )
            scrubbed += _scrub_rows(
                Message.objects.filter(Q(conversation__session_id__in=list(rooms)) | Q(conversation__room__session_id__in=list(rooms))),
                ["text"], pattern, needles,
            )
            for analytics in SessionAnalytics.objects.filter(session_id__in=list(rooms)):
                fields = ["summary", "participation", "room_comparison", "confusion_topics"]
                new = {f: _scrub_json(getattr(analytics, f), pattern) for f in fields}
                if any(new[f] != getattr(analytics, f) for f in fields):
                    SessionAnalytics.objects.filter(pk=analytics.pk).update(**new)
                    scrubbed += 1
            scrubbed += _admin_history_scrub(user, student, pattern, needles)
        counts["scrubbed"] = scrubbed
        counts["login_records"] = _login_records_delete(user.username)

        # Both modes empty and deactivate the account first: the deactivation closes the
        # student's open sockets (sessions.signals), a deleted user's too.
        user.username = f"erased-{user.pk}"
        user.first_name = user.last_name = user.email = ""
        user.is_active = False
        user.set_unusable_password()
        user.save()
        Student.objects.filter(pk=student.pk).update(preferred_name="", student_number="")
        audit = _audit(student=student, by=by, action=mode, counts=counts)
        if mode == "delete":
            user.delete()
        # Files cannot be rolled back: they go once the rows saying they are gone are committed.
        transaction.on_commit(lambda: audio_files_delete(audio))
    return audit


def _admin_history_scrub(user: User, student: Student, pattern: re.Pattern, needles: list[str]) -> int:
    """The admin's history names the objects it logged (str(user), str(student)): the entries
    of the student's tenant's admins and of the operator (no tenant), and any entry about the
    student's own user or student row; another tenant's history (a namesake) is left alone."""
    from django.contrib.admin.models import LogEntry
    from django.contrib.contenttypes.models import ContentType

    entries = LogEntry.objects.filter(
        Q(user__tenant_id=student.tenant_id)
        | Q(user__tenant__isnull=True)
        | Q(content_type=ContentType.objects.get_for_model(User), object_id=str(user.pk))
        | Q(content_type=ContentType.objects.get_for_model(Student), object_id=str(student.pk))
    )
    return _scrub_rows(entries, ["object_repr", "change_message"], pattern, needles)


def _login_records_delete(username: str) -> int:
    """django-axes keeps the username of each login attempt."""
    deleted = 0
    for name in ("AccessAttempt", "AccessLog", "AccessFailureLog"):
        try:
            model = apps.get_model("axes", name)
        except LookupError:
            continue
        deleted += model.objects.filter(username=username).delete()[0]
    return deleted
