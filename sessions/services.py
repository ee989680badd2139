"""Writes of the sessions app. Broadcasts leave from here, after the transaction commits."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from courses.exceptions import DomainError
from courses.models import Course, Student, TeachingMode, User
from sessions import groups
from sessions.models import Conversation, Message, PromptTemplate, TranscriptSegment
from sessions.realtime import broadcast_on_commit, control_on_commit
from sessions.selectors import message_event

ANNOUNCEMENT_MAX_CHARS = 2000


def tenant_announce(*, tenant_id: int, text: str, author: AbstractBaseUser | None) -> None:
    """Broadcast an announcement to every open socket of a tenant's users (ephemeral: seq null)."""
    text = (text or "").strip()
    if not text:
        raise DomainError("Write something to announce.", code="invalid", fields={"text": ["Required."]})
    if len(text) > ANNOUNCEMENT_MAX_CHARS:
        raise DomainError(
            f"An announcement has at most {ANNOUNCEMENT_MAX_CHARS} characters.",
            code="invalid", fields={"text": ["Too long."]},
        )
    data = {
        "tenant_id": tenant_id,
        "text": text,
        "author": (
            {"id": author.pk, "name": getattr(author, "display_name", str(author))} if author else None
        ),
    }
    broadcast_on_commit(groups=[groups.tenant_group(tenant_id)], event_type="tenant.announcement", data=data)


def user_sockets_close(
    *, user_id: int, code: int = 4401, kind: str | None = None, object_id: int | None = None
) -> None:
    """Close a user's open sockets after commit: all of them, or only those of one route object
    (`kind="room", object_id=3` when a student is moved out of room 3)."""
    control_on_commit(
        group=groups.user_group(user_id),
        message={"type": "ws.close", "code": int(code), "kind": kind, "object_id": object_id},
    )


# --- prompt template versions ------------------------------------------------------------------


def _prompt_lineage(*, tenant_id: int | None, kind: str) -> QuerySet[PromptTemplate]:
    return PromptTemplate.objects.filter(tenant_id=tenant_id, kind=kind)


def prompt_template_publish(*, template: PromptTemplate, created_by: User | None) -> PromptTemplate:
    """Insert the unsaved `template` as the next version of its tenant and kind, and activate it."""
    with transaction.atomic():
        # Lock the lineage so two publishers cannot both take the same version number.
        versions = list(
            _prompt_lineage(tenant_id=template.tenant_id, kind=template.kind)
            .select_for_update()
            .values_list("version", flat=True)
        )
        # Deactivate first: the database allows one active version per tenant and kind.
        _prompt_lineage(tenant_id=template.tenant_id, kind=template.kind).filter(is_active=True).update(
            is_active=False
        )
        template.pk = None
        template.version = max(versions, default=0) + 1
        template.is_active = True
        template.created_by = created_by
        template.save(force_insert=True)
    return template


def prompt_template_new_version(
    *, source: PromptTemplate, tenant_id: int | None, created_by: User | None
) -> PromptTemplate:
    """A copy of `source` published as the next active version of `tenant_id`'s lineage.

    With another tenant than the source's (a tenant copying a global template) the copy starts
    or continues that tenant's own lineage, which then takes precedence over the global one.
    """
    copy = PromptTemplate(
        tenant_id=tenant_id, kind=source.kind, name=source.name, body=source.body, notes=f"Copy of {source}"
    )
    return prompt_template_publish(template=copy, created_by=created_by)


def prompt_template_activate(*, template: PromptTemplate) -> None:
    """Make `template` the active version of its tenant and kind (e.g. to roll back)."""
    with transaction.atomic():
        lineage = _prompt_lineage(tenant_id=template.tenant_id, kind=template.kind)
        list(lineage.select_for_update().values_list("pk", flat=True))
        lineage.filter(is_active=True).exclude(pk=template.pk).update(is_active=False)
        lineage.filter(pk=template.pk).update(is_active=True)
    template.is_active = True


# --- practice conversations ----------------------------------------------------------------------

PRACTICE_MODES = (TeachingMode.SOCRATIC, TeachingMode.TEACHER, TeachingMode.QA)
# The same as choices, named once for the OpenAPI schema (SPECTACULAR_SETTINGS.ENUM_NAME_OVERRIDES).
PRACTICE_MODE_CHOICES = [(mode.value, mode.label) for mode in PRACTICE_MODES]
TITLE_MAX_CHARS = 200
# Characters a student's message may not contain (C0 controls except tab and newline).
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def practice_mode_clean(mode: Any) -> str:
    """A practice conversation's mode, or DomainError(invalid) naming the allowed ones."""
    if mode not in PRACTICE_MODES:
        allowed = ", ".join(PRACTICE_MODES)
        raise DomainError(
            f"Choose a mode: {allowed}.", code="invalid", fields={"mode": [f"One of: {allowed}."]}
        )
    return str(mode)


def message_text_clean(text: Any) -> str:
    """A student's message as it will be stored, or DomainError with a code clients switch on:
    `invalid_message` (not text), `empty_message`, `message_too_long`."""
    if not isinstance(text, str):
        raise DomainError("A message is text.", code="invalid_message", fields={"text": ["Must be a string."]})
    text = _CONTROL_CHARACTERS.sub("", text).strip()
    if not text:
        raise DomainError("Write something first.", code="empty_message", fields={"text": ["Required."]})
    limit = int(settings.TUTOR_MAX_MESSAGE_CHARS)
    if len(text) > limit:
        raise DomainError(
            f"A message has at most {limit} characters; this one has {len(text)}.",
            code="message_too_long", fields={"text": [f"At most {limit} characters."]},
        )
    return text


def practice_default_mode(course: Course) -> str:
    """The mode a new practice conversation starts in: the course's, if practice offers it."""
    mode = course.default_teaching_mode
    return mode if mode in PRACTICE_MODES else TeachingMode.SOCRATIC


def conversation_create(
    *, student: Student, course: Course, mode: str | None = None, title: str = "", reuse_empty: bool = True
) -> tuple[Conversation, bool]:
    """A practice conversation of `student` in `course` (no mode: the course's default); an empty
    one of the same mode is reused rather than piling up blank conversations. Returns
    (conversation, created)."""
    mode = practice_mode_clean(mode) if mode else practice_default_mode(course)
    title = (title or "").strip()[:TITLE_MAX_CHARS]
    if reuse_empty:
        empty = (
            Conversation.objects.filter(
                student=student, course=course, room__isnull=True, mode=mode, last_seq=0
            )
            .order_by("-updated_at")
            .first()
        )
        if empty is not None:
            if title and title != empty.title:
                empty.title = title
                empty.save(update_fields=["title", "updated_at"])
            return empty, False
    conversation = Conversation.objects.create(
        tenant_id=course.tenant_id, course=course, student=student, mode=mode, title=title,
        persona_id=course.default_persona_id,
    )
    return conversation, True


def conversation_update(*, conversation: Conversation, title: str | None = None, mode: str | None = None) -> Conversation:
    """Rename a conversation and/or switch its teaching mode (the next reply uses the new one)."""
    fields = ["updated_at"]
    if title is not None:
        if not isinstance(title, str):
            raise DomainError("A title is text.", code="invalid", fields={"title": ["Must be a string."]})
        conversation.title = title.strip()[:TITLE_MAX_CHARS]
        fields.append("title")
    if mode is not None:
        conversation.mode = practice_mode_clean(mode)
        fields.append("mode")
    conversation.save(update_fields=fields)
    return conversation


def conversation_delete(*, conversation: Conversation) -> None:
    """Delete a conversation and its messages; its open sockets are closed with 4404."""
    conversation_id = conversation.pk
    with transaction.atomic():
        conversation.delete()
        _conversation_sockets_close_on_commit(conversation_id)


def conversations_clear(*, student: Student, course: Course, mode: str = "") -> int:
    """Delete the student's practice conversations of a course (of one mode, or all). Returns
    how many were deleted."""
    if mode:
        mode = practice_mode_clean(mode)
    rows = Conversation.objects.filter(student=student, course=course, room__isnull=True)
    if mode:
        rows = rows.filter(mode=mode)
    ids = list(rows.values_list("pk", flat=True))
    with transaction.atomic():
        Conversation.objects.filter(pk__in=ids).delete()
        for conversation_id in ids:
            _conversation_sockets_close_on_commit(conversation_id)
    return len(ids)


def _conversation_sockets_close_on_commit(conversation_id: int) -> None:
    """A deleted conversation's open sockets are closed with 4404 (it is gone)."""
    control_on_commit(
        group=groups.conversation_group(conversation_id),
        message={"type": "ws.close", "code": 4404, "kind": "conversation", "object_id": conversation_id},
    )


def _conversation_next_seq(conversation_id: int) -> int:
    """Take the conversation's next `seq` (call inside the writing transaction)."""
    Conversation.objects.filter(pk=conversation_id).update(
        last_seq=F("last_seq") + 1, updated_at=timezone.now()
    )
    return Conversation.objects.filter(pk=conversation_id).values_list("last_seq", flat=True).get()


def utterance_audio_save(instance: Any, wav: bytes, *, name: str) -> None:
    """An utterance's WAV into default storage (filesystem or S3, settings "Audio storage"), as
    `instance.audio` (a segment's or a message's), without touching its other fields."""
    from django.core.files.base import ContentFile

    instance.audio.save(name, ContentFile(wav), save=False)
    type(instance).objects.filter(pk=instance.pk).update(audio=instance.audio.name)


def conversation_message_post(
    *, conversation: Conversation, author: User, text: Any, source: str = "text",
    provider: str = "", audio_wav: bytes | None = None,
) -> Message:
    """Persist a student's message with the conversation's next `seq`, then (after commit)
    broadcast it as `transcript.final`. Raises DomainError for a bad message; nothing is kept.
    A spoken one: `source` "speech", the STT engine as `provider`, and `audio_wav` the utterance,
    kept when the tenant keeps audio (the caller passes it only then)."""
    text = message_text_clean(text)
    if source not in TranscriptSegment.Source.values:
        raise DomainError("source is \"text\" or \"speech\".", code="invalid", fields={"source": ["Unknown source."]})
    with transaction.atomic():
        seq = _conversation_next_seq(conversation.pk)
        message = Message.objects.create(
            conversation=conversation, seq=seq, role=Message.Role.STUDENT, author=author, text=text,
            source=source, provider=(provider or "")[:50],
        )
        if audio_wav:
            utterance_audio_save(message, audio_wav, name=f"c{conversation.pk}-{seq}.wav")
        if not conversation.title:
            title = " ".join(text.split())
            conversation.title = title if len(title) <= 60 else title[:59].rsplit(" ", 1)[0] + "…"
            Conversation.objects.filter(pk=conversation.pk, title="").update(title=conversation.title)
        event = message_event(message, conversation=conversation, author_name=author.display_name)
        broadcast_on_commit(groups=[groups.conversation_group(conversation.pk)], **event)
    return message


def tutor_reply_open(*, conversation: Conversation) -> Message:
    """The tutor's reply-to-be, status `streaming` and no `seq` yet (it takes one when final).
    If its process dies, `conversation_open` closes it later (see `stale_replies_close`)."""
    return Message.objects.create(
        conversation=conversation, seq=None, role=Message.Role.TUTOR, status=Message.Status.STREAMING
    )


def tutor_reply_close(
    *,
    message_id: int,
    text: str,
    status: str,
    model: str = "",
    offline: bool = False,
    guardrail: str = "",
    citations: list[dict] | None = None,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    error: str = "",
    notice: str = "",
    question_id: int | None = None,
) -> Message:
    """Finish a streaming reply: take its `seq`, store text, model, verdict and citations, and
    broadcast `tutor.message` after commit. The guardrail verdict is stored on the student's
    question (`question_id`) too."""
    with transaction.atomic():
        message = Message.objects.select_related("conversation").get(pk=message_id)
        if message.status != Message.Status.STREAMING:
            return message  # closed already (a stale sweep, or twice on cancel): keep the first
        message.seq = _conversation_next_seq(message.conversation_id)
        message.text = text
        message.status = status
        message.model = model[:200]
        message.offline = offline
        message.guardrail = guardrail
        message.citations = citations or []
        message.prompt_tokens = prompt_tokens
        message.completion_tokens = completion_tokens
        message.error = error
        message.notice = notice[:300]
        message.save()
        if question_id is not None and guardrail:
            Message.objects.filter(pk=question_id, role=Message.Role.STUDENT).update(guardrail=guardrail)
        conversation = message.conversation
        if conversation.room_id is not None:
            # A breakout room's tutor: its line joins the session transcript (seq of the
            # session) and goes to the room and the monitor. An empty, stopped reply says nothing.
            if text or status == Message.Status.FAILED:
                from sessions.live import room_tutor_line_post

                room_tutor_line_post(
                    message=message, room_id=conversation.room_id, session_id=conversation.session_id,
                    speaker_name=_tutor_name(conversation),
                )
            return message
        event = message_event(message, conversation=conversation)
        broadcast_on_commit(groups=[groups.conversation_group(message.conversation_id)], **event)
    return message


def _tutor_name(conversation: Conversation) -> str:
    persona = conversation.persona
    if persona is None and conversation.persona_id is None:
        persona = conversation.course.default_persona
    return persona.name if persona else "Tutor"


STALE_REPLY_GRACE_SECONDS = 30


def stale_replies_close(*, conversation_id: int) -> int:
    """Close replies left `streaming` longer than a reply may take (their process died): they
    become `interrupted`, keep an explanation, and take their `seq` like any other reply."""
    cutoff = timezone.now() - timedelta(
        seconds=float(settings.LLM_TOTAL_TIMEOUT_SECONDS) + STALE_REPLY_GRACE_SECONDS
    )
    stale = list(
        Message.objects.filter(
            conversation_id=conversation_id, status=Message.Status.STREAMING, created_at__lt=cutoff
        ).values_list("pk", flat=True)
    )
    for message_id in stale:
        tutor_reply_close(
            message_id=message_id, text="", status=Message.Status.INTERRUPTED,
            error="The reply was cut off when the server restarted.",
        )
    return len(stale)


def conversation_open(*, conversation: Conversation) -> Conversation:
    """Ready a conversation for reading (its page, a socket's connect): replies a dead process
    left streaming are closed first, and the fields that changes are reloaded."""
    if stale_replies_close(conversation_id=conversation.pk):
        conversation.refresh_from_db(fields=["last_seq", "updated_at"])
    return conversation
