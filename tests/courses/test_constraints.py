"""The database itself refuses bad data, whatever code path writes it."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from analytics.models import StudentProgress
from courses.models import Course, CourseDocument, Tenant, User
from sessions.models import LLMModel, PromptTemplate, RoomAssignment, TranscriptSegment
from tests import factories

pytestmark = pytest.mark.django_db


def refuses(fn) -> bool:
    """True when the write raises IntegrityError (rolled back so the test can go on)."""
    try:
        with transaction.atomic():
            fn()
    except IntegrityError:
        return True
    return False


def test_course_code_unique_per_tenant_case_insensitive(course, other_tenant):
    assert refuses(lambda: Course.objects.create(tenant=course.tenant, code="cs101", title="Dup"))
    # the same code in another tenant is fine
    Course.objects.create(tenant=other_tenant, code="CS101", title="Theirs")


def test_segment_seq_unique_per_session():
    seg = factories.TranscriptSegmentFactory(seq=7)
    assert refuses(
        lambda: TranscriptSegment.objects.create(
            session=seg.session, seq=7, speaker_kind="student", speaker_name="B", text="again"
        )
    )
    # the same seq in another session is fine
    factories.TranscriptSegmentFactory(seq=7)


def test_segment_must_end_after_it_starts():
    session = factories.LiveSessionFactory()
    assert refuses(
        lambda: TranscriptSegment.objects.create(
            session=session, seq=1, speaker_kind="student", speaker_name="A", text="x",
            start_ms=500, end_ms=100,
        )
    )


def test_student_cannot_be_in_two_rooms_of_one_session():
    assignment = factories.RoomAssignmentFactory()
    other_room = factories.BreakoutRoomFactory(session=assignment.session, number=99)
    assert refuses(
        lambda: RoomAssignment.objects.create(
            session=assignment.session, room=other_room, student=assignment.student
        )
    )
    # in another session's room the same student is fine
    later = factories.BreakoutRoomFactory(
        session=factories.LiveSessionFactory(course=assignment.session.course)
    )
    RoomAssignment.objects.create(session=later.session, room=later, student=assignment.student)


def test_room_numbers_unique_per_session():
    room = factories.BreakoutRoomFactory(number=1)
    assert refuses(lambda: factories.BreakoutRoomFactory(session=room.session, number=1))


def test_engagement_score_is_0_to_100():
    progress = factories.StudentProgressFactory()
    progress.engagement_score = 101
    assert refuses(progress.save)
    assert refuses(
        lambda: StudentProgress.objects.filter(pk=progress.pk).update(engagement_score=-1)
    )


def test_document_progress_is_0_to_100():
    doc = factories.CourseDocumentFactory()
    assert refuses(lambda: CourseDocument.objects.filter(pk=doc.pk).update(progress=150))


def test_only_one_active_prompt_per_kind_and_tenant(tenant):
    factories.PromptTemplateFactory(tenant=None, version=1, is_active=True)
    assert refuses(lambda: factories.PromptTemplateFactory(tenant=None, version=2, is_active=True))
    assert refuses(lambda: factories.PromptTemplateFactory(tenant=None, version=1, is_active=False))
    factories.PromptTemplateFactory(tenant=None, version=2, is_active=False)
    # a tenant's own active template lives beside the global one
    factories.PromptTemplateFactory(tenant=tenant, version=1, is_active=True)
    assert refuses(lambda: factories.PromptTemplateFactory(tenant=tenant, version=2, is_active=True))
    assert PromptTemplate.objects.count() == 3


def test_llm_chain_positions_and_ranges(tenant):
    factories.LLMModelFactory(tenant=None, position=1)
    assert refuses(lambda: factories.LLMModelFactory(tenant=None, position=1))
    factories.LLMModelFactory(tenant=tenant, position=1)
    assert refuses(lambda: factories.LLMModelFactory(tenant=tenant, temperature=Decimal("2.5")))
    assert refuses(
        lambda: factories.LLMModelFactory(tenant=tenant, price_per_1k_prompt_tokens=Decimal("-1"))
    )
    assert LLMModel.objects.count() == 2


def test_users_need_a_tenant_unless_superuser():
    assert refuses(lambda: User.objects.create_user("loose", password="x", role="student"))
    User.objects.create_superuser("root2", "r@example.org", "x")


def test_user_role_must_be_known(tenant):
    assert refuses(lambda: User.objects.create_user("odd", password="x", tenant=tenant, role="dean"))


def test_tenant_budget_and_retention_sane():
    assert refuses(lambda: Tenant.objects.create(name="A", slug="a", monthly_budget=Decimal("-5")))
    assert refuses(lambda: Tenant.objects.create(name="B", slug="b", retention_days=0))


def test_session_cannot_end_before_it_starts():
    from datetime import timedelta

    from django.utils import timezone

    now = timezone.now()
    assert refuses(
        lambda: factories.LiveSessionFactory(started_at=now, ended_at=now - timedelta(minutes=1))
    )


def test_conversation_needs_a_student_or_a_room(course):
    from sessions.models import Conversation

    assert refuses(lambda: Conversation.objects.create(tenant=course.tenant, course=course))
