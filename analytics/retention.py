"""Retention: what a tenant keeps for `Tenant.retention_days`, and nothing longer.

Per tenant, with `cutoff = now - retention_days`:

- a live session that *ended* before the cutoff (or, never ended and not live, was last active
  before it) loses its transcript (TranscriptSegment rows and their audio files) and the messages
  of its rooms' conversations; the session, rooms and conversation shells stay;
- a practice conversation last updated before the cutoff is deleted with its messages (its title
  is the student's first line);
- utterance audio older than the cutoff is deleted from segments and messages (a spoken practice
  question) that are kept (the session or conversation is still within retention as a whole):
  the file goes, the text stays; a tenant with `keep_audio`
  off keeps no audio at all, so all of its remaining files go.

StudentProgress and SessionAnalytics stay (the professor's record): numbers, evidence seqs, and the
summary, whose offline form quotes a few key lines (docs/decisions.md). Files are
deleted from storage before their rows, in batches of RETENTION_BATCH_SIZE (constant memory);
running it again finds nothing more to do.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from courses.models import Tenant
from sessions.models import Conversation, LiveSession, Message, TranscriptSegment

logger = logging.getLogger(__name__)


@dataclass
class PurgeCounts:
    segments: int = 0
    messages: int = 0
    conversations: int = 0
    audio_files: int = 0

    def add(self, other: PurgeCounts) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)


@dataclass
class PurgeReport:
    totals: PurgeCounts = field(default_factory=PurgeCounts)
    tenants: dict[int, PurgeCounts] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"totals": asdict(self.totals), "tenants": {str(k): asdict(v) for k, v in self.tenants.items()}}


def _batch_size() -> int:
    return max(1, int(getattr(settings, "RETENTION_BATCH_SIZE", 500)))


def audio_files_delete(names: list[str]) -> int:
    """Delete these audio files from the segments' (and messages') storage; missing ones count as gone."""
    storage = TranscriptSegment._meta.get_field("audio").storage
    deleted = 0
    for name in names:
        if not name:
            continue
        try:
            storage.delete(name)
            deleted += 1
        except OSError:
            logger.warning("could not delete audio file %s", name, exc_info=True)
    return deleted


def _audio_rows_delete(queryset: QuerySet) -> tuple[int, int]:
    """Delete rows with an `audio` file (segments, messages): files first, then rows, in
    batches. (rows of the queryset's model, files)."""
    model, rows, files, size = queryset.model, 0, 0, _batch_size()
    while batch := list(queryset.order_by("pk").values_list("pk", "audio")[:size]):
        files += audio_files_delete([audio for _, audio in batch if audio])
        rows += model.objects.filter(pk__in=[pk for pk, _ in batch]).delete()[1].get(model._meta.label, 0)
    return rows, files


def _rows_delete(queryset: QuerySet) -> int:
    """Delete rows of `queryset` in batches of primary keys; the count of rows of its model."""
    model, deleted, size = queryset.model, 0, _batch_size()
    while pks := list(queryset.order_by("pk").values_list("pk", flat=True)[:size]):
        deleted += model.objects.filter(pk__in=pks).delete()[1].get(model._meta.label, 0)
    return deleted


def _audio_clear(queryset: QuerySet) -> int:
    """Delete the audio files of rows that stay (segments, messages); their `audio` becomes empty."""
    model, files, size = queryset.model, 0, _batch_size()
    queryset = queryset.exclude(audio="")
    while batch := list(queryset.order_by("pk").values_list("pk", "audio")[:size]):
        files += audio_files_delete([audio for _, audio in batch])
        model.objects.filter(pk__in=[pk for pk, _ in batch]).update(audio="")
    return files


def expired_sessions(*, tenant: Tenant, cutoff: datetime) -> QuerySet:
    return (
        LiveSession.objects.filter(tenant=tenant)
        .exclude(status=LiveSession.Status.LIVE)
        .filter(
            Q(ended_at__lt=cutoff)
            | Q(ended_at__isnull=True, last_activity_at__lt=cutoff)
            | Q(ended_at__isnull=True, last_activity_at__isnull=True, created_at__lt=cutoff)
        )
    )


def tenant_retention_purge(*, tenant: Tenant, now: datetime | None = None, dry_run: bool = False) -> PurgeCounts:
    """One tenant's purge; `dry_run` counts what would go and deletes nothing."""
    now = now or timezone.now()
    try:
        cutoff = now - timedelta(days=tenant.retention_days)
    except OverflowError:  # more days than the calendar has: nothing is old enough
        cutoff = datetime.min.replace(tzinfo=UTC)
    sessions = expired_sessions(tenant=tenant, cutoff=cutoff).values("pk")
    segments = TranscriptSegment.objects.filter(session__in=sessions)
    room_messages = Message.objects.filter(
        Q(conversation__session__in=sessions) | Q(conversation__room__session__in=sessions)
    )
    practice = Conversation.objects.filter(tenant=tenant, session__isnull=True, room__isnull=True, updated_at__lt=cutoff)
    practice_messages = Message.objects.filter(conversation__in=practice.values("pk"))
    # A tenant that does not keep audio (any more) keeps none: its remaining files go too.
    audio_cutoff = cutoff if tenant.keep_audio else now
    aged_audio = TranscriptSegment.objects.filter(session__tenant=tenant, created_at__lt=audio_cutoff)
    aged_message_audio = Message.objects.filter(conversation__tenant=tenant, created_at__lt=audio_cutoff)

    if dry_run:
        return PurgeCounts(
            segments=segments.count(), messages=room_messages.count() + practice_messages.count(),
            conversations=practice.count(),
            audio_files=aged_audio.exclude(audio="").count() + aged_message_audio.exclude(audio="").count(),
        )
    counts = PurgeCounts()
    counts.segments, counts.audio_files = _audio_rows_delete(segments)
    for messages in (room_messages, practice_messages):
        rows, files = _audio_rows_delete(messages)
        counts.messages += rows
        counts.audio_files += files
    counts.conversations = _rows_delete(practice)
    counts.audio_files += _audio_clear(aged_audio) + _audio_clear(aged_message_audio)
    if any(asdict(counts).values()):
        logger.info(
            "retention purge, tenant %s (%d days): %s", tenant.pk, tenant.retention_days, asdict(counts)
        )
    return counts


def retention_purge(*, now: datetime | None = None, dry_run: bool = False) -> PurgeReport:
    """Apply every tenant's retention (see the module's docstring). Idempotent. `dry_run`:
    count what would go (audio: files of expired and aged segments, possibly overlapping)."""
    now = now or timezone.now()
    report = PurgeReport()
    for tenant in Tenant.objects.order_by("pk").only("pk", "retention_days", "keep_audio"):
        counts = tenant_retention_purge(tenant=tenant, now=now, dry_run=dry_run)
        report.tenants[tenant.pk] = counts
        report.totals.add(counts)
    logger.info("retention purge%s: %s", " (dry run)" if dry_run else "", asdict(report.totals))
    return report
