"""Retention purge: exactly what is older than each tenant's retention goes, files included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from analytics.models import StudentProgress
from analytics.retention import retention_purge
from analytics.tasks import retention_purge as retention_purge_task
from sessions.models import Conversation, LiveSession, Message, TranscriptSegment
from tests import factories

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    settings.RETENTION_BATCH_SIZE = 2  # several batches with a handful of rows
    return tmp_path


def ended_session(tenant, ended_at: datetime) -> LiveSession:
    return factories.LiveSessionFactory(
        course=factories.CourseFactory(tenant=tenant), status=LiveSession.Status.ENDED,
        started_at=ended_at - timedelta(hours=1), ended_at=ended_at,
    )


def segment(session, *, at: datetime, audio: bool = False, text: str = "a line") -> TranscriptSegment:
    row = factories.TranscriptSegmentFactory(session=session, text=text)
    if audio:
        row.audio.save(f"utt-{row.pk}.wav", ContentFile(b"RIFF0000WAVE"), save=True)
    TranscriptSegment.objects.filter(pk=row.pk).update(created_at=at)
    return row


def practice(tenant, *, updated_at: datetime) -> Conversation:
    conversation = factories.ConversationFactory(course=factories.CourseFactory(tenant=tenant), title="My question")
    factories.MessageFactory(conversation=conversation, seq=1)
    factories.MessageFactory(conversation=conversation, seq=2, role=Message.Role.TUTOR)
    Conversation.objects.filter(pk=conversation.pk).update(updated_at=updated_at)
    return conversation


@pytest.fixture
def two_tenants():
    short = factories.TenantFactory(retention_days=30, keep_audio=True)
    long = factories.TenantFactory(retention_days=365, keep_audio=True)
    return short, long


def test_purges_exactly_what_is_expired_per_tenant(two_tenants):
    short, long = two_tenants
    short_cutoff, long_cutoff = NOW - timedelta(days=30), NOW - timedelta(days=365)

    old = ended_session(short, short_cutoff - SECOND)
    old_lines = [segment(old, at=short_cutoff - timedelta(hours=2), audio=True) for _ in range(3)]
    room_conversation = factories.ConversationFactory(
        course=old.course, student=None, session=old, room=factories.BreakoutRoomFactory(session=old)
    )
    factories.MessageFactory(conversation=room_conversation, seq=1, role=Message.Role.TUTOR)
    progress = factories.StudentProgressFactory(session=old, words=42)

    recent = ended_session(short, short_cutoff + SECOND)
    kept_line = segment(recent, at=short_cutoff + SECOND, audio=True)
    # A line of a kept session whose audio is past retention: the file goes, the words stay.
    aged_audio = segment(recent, at=short_cutoff - SECOND, audio=True, text="kept words")

    # The same ages are well within the other tenant's year.
    other = ended_session(long, short_cutoff - SECOND)
    other_line = segment(other, at=short_cutoff - timedelta(hours=2), audio=True)
    ancient = ended_session(long, long_cutoff - SECOND)
    segment(ancient, at=long_cutoff - timedelta(days=1))

    stale_chat = practice(short, updated_at=short_cutoff - SECOND)
    fresh_chat = practice(short, updated_at=short_cutoff + SECOND)
    other_chat = practice(long, updated_at=short_cutoff - SECOND)
    old_files = [line.audio.name for line in old_lines]

    report = retention_purge(now=NOW)

    assert report.tenants[short.pk].segments == 3
    assert report.tenants[short.pk].audio_files == 4  # three with the rows, one kept line's
    assert report.tenants[short.pk].messages == 3  # the room's tutor line, the chat's two
    assert report.tenants[short.pk].conversations == 1
    assert report.tenants[long.pk].segments == 1
    assert not TranscriptSegment.objects.filter(session=old).exists()
    assert not TranscriptSegment.objects.filter(session=ancient).exists()
    assert not Message.objects.filter(conversation=room_conversation).exists()
    assert Conversation.objects.filter(pk=room_conversation.pk).exists()  # the shell of the room
    assert not Conversation.objects.filter(pk=stale_chat.pk).exists()
    assert Message.objects.filter(conversation=fresh_chat).count() == 2
    assert Message.objects.filter(conversation=other_chat).count() == 2
    assert StudentProgress.objects.get(pk=progress.pk).words == 42
    for name in old_files:
        assert not default_storage.exists(name)
    for line in (kept_line, other_line):
        line.refresh_from_db()
        assert line.audio and default_storage.exists(line.audio.name)
    aged_audio.refresh_from_db()
    assert (aged_audio.text, aged_audio.audio.name) == ("kept words", "")


def test_a_second_run_finds_nothing(two_tenants):
    short, _ = two_tenants
    old = ended_session(short, NOW - timedelta(days=31))
    segment(old, at=NOW - timedelta(days=31), audio=True)
    with time_machine.travel(NOW, tick=False):
        first = retention_purge_task.delay()
    assert first is not None
    assert retention_purge(now=NOW).totals.segments == 0


def test_live_sessions_and_missing_files_are_handled(two_tenants):
    short, _ = two_tenants
    live = factories.LiveSessionFactory(
        course=factories.CourseFactory(tenant=short), status=LiveSession.Status.LIVE,
        started_at=NOW - timedelta(days=40), last_activity_at=NOW - timedelta(days=40),
    )
    segment(live, at=NOW - timedelta(days=10))
    never_ended = factories.LiveSessionFactory(course=factories.CourseFactory(tenant=short),
                                               last_activity_at=NOW - timedelta(days=31))
    gone = segment(never_ended, at=NOW - timedelta(days=31), audio=True)
    default_storage.delete(gone.audio.name)  # already missing on disk

    report = retention_purge(now=NOW)
    assert TranscriptSegment.objects.filter(session=live).count() == 1
    assert not TranscriptSegment.objects.filter(session=never_ended).exists()
    assert report.totals.segments == 1


def test_a_tenant_that_keeps_no_audio_keeps_none(two_tenants):
    short, _ = two_tenants
    recent = ended_session(short, NOW - timedelta(days=1))
    line = segment(recent, at=NOW - timedelta(hours=3), audio=True, text="words stay")
    assert retention_purge(now=NOW).totals.audio_files == 0  # keep_audio on: within retention

    short.keep_audio = False
    short.save()
    name = line.audio.name
    assert retention_purge(now=NOW).totals.audio_files == 1
    line.refresh_from_db()
    assert (line.text, line.audio.name) == ("words stay", "")
    assert not default_storage.exists(name)


def test_dry_run_counts_and_deletes_nothing(two_tenants):
    from io import StringIO

    from django.core.management import call_command

    short, _ = two_tenants
    old = ended_session(short, NOW - timedelta(days=31))
    segment(old, at=NOW - timedelta(days=31), audio=True)
    practice(short, updated_at=NOW - timedelta(days=31))
    with time_machine.travel(NOW, tick=False):
        out = StringIO()
        call_command("retention_purge", "--dry-run", stdout=out)
    assert f"tenant {short.pk}: would delete 1 lines, 2 messages, 1 conversations, 1 audio files" in out.getvalue()
    assert TranscriptSegment.objects.filter(session=old).exists() and Message.objects.count() == 2
    with time_machine.travel(NOW, tick=False):
        call_command("retention_purge", stdout=StringIO())
    assert not TranscriptSegment.objects.filter(session=old).exists() and Message.objects.count() == 0


def test_exactly_at_the_boundary_is_kept(two_tenants):
    short, _ = two_tenants
    cutoff = NOW - timedelta(days=30)
    on_the_line = ended_session(short, cutoff)
    line = segment(on_the_line, at=cutoff, audio=True)
    with time_machine.travel(NOW, tick=False):
        retention_purge_task.delay()
    line.refresh_from_db()
    assert line.audio and default_storage.exists(line.audio.name)
    with time_machine.travel(NOW + SECOND, tick=False):
        retention_purge_task.delay()
    assert not TranscriptSegment.objects.filter(pk=line.pk).exists()


def spoken_question(conversation, *, seq: int, at: datetime) -> Message:
    """A student's spoken practice question with its kept WAV, said at `at`."""
    row = factories.MessageFactory(conversation=conversation, seq=seq, source="speech", provider="pocketsphinx")
    row.audio.save(f"c{conversation.pk}-{seq}.wav", ContentFile(b"RIFF0000WAVE"), save=True)
    Message.objects.filter(pk=row.pk).update(created_at=at)
    return row


def test_spoken_questions_lose_their_audio_past_retention_like_segments(two_tenants):
    short, _ = two_tenants
    cutoff = NOW - timedelta(days=30)
    stale_chat = practice(short, updated_at=cutoff - SECOND)
    deleted = spoken_question(stale_chat, seq=3, at=cutoff - SECOND)
    fresh_chat = practice(short, updated_at=cutoff + SECOND)
    aged = spoken_question(fresh_chat, seq=3, at=cutoff - SECOND)  # a kept chat's old question
    fresh = spoken_question(fresh_chat, seq=4, at=cutoff + SECOND)
    names = {m.pk: m.audio.name for m in (deleted, aged, fresh)}

    assert retention_purge(now=NOW, dry_run=True).tenants[short.pk].audio_files == 2
    report = retention_purge(now=NOW)

    assert report.tenants[short.pk].audio_files == 2
    assert not Message.objects.filter(pk=deleted.pk).exists()
    assert not default_storage.exists(names[deleted.pk])
    aged.refresh_from_db()
    assert (aged.text, aged.source, aged.audio.name) == ("How do loops work?", "speech", "")  # words stay
    assert not default_storage.exists(names[aged.pk])
    fresh.refresh_from_db()
    assert fresh.audio.name == names[fresh.pk] and default_storage.exists(fresh.audio.name)
    assert retention_purge(now=NOW).totals.audio_files == 0

    short.keep_audio = False  # keeps none at all from now on
    short.save()
    assert retention_purge(now=NOW).totals.audio_files == 1
    assert not default_storage.exists(names[fresh.pk])


def test_a_tenant_that_keeps_everything_for_ages_does_not_stop_the_others():
    """retention_days is any positive integer: a very large one ("forever") keeps everything and
    the tenants after it are still purged."""
    forever = factories.TenantFactory(retention_days=10**6, keep_audio=True)  # past datetime.min
    kept = segment(ended_session(forever, NOW - timedelta(days=4000)), at=NOW - timedelta(days=4000))
    later = factories.TenantFactory(retention_days=30, keep_audio=True)
    gone = segment(ended_session(later, NOW - timedelta(days=31)), at=NOW - timedelta(days=31))
    report = retention_purge(now=NOW)
    assert TranscriptSegment.objects.filter(pk=kept.pk).exists()
    assert not TranscriptSegment.objects.filter(pk=gone.pk).exists()
    assert report.tenants[forever.pk].segments == 0 and report.tenants[later.pk].segments == 1
