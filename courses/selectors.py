"""Reads of the courses app, with the access rules in one place for portal, API and consumers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import (
    Count,
    IntegerField,
    Model,
    OuterRef,
    Prefetch,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce

from courses.exceptions import NotFound
from courses.models import Course, CourseDocument, DocumentChunk, Enrollment, Professor, Student, User


def _related_model(model: type[Model], accessor: str) -> type[Model]:
    """The model behind a reverse relation, found by name so `courses` never imports another app."""
    return model._meta.get_field(accessor).related_model  # type: ignore[return-value]


def _count_subquery(model: type[Model], fk: str, **filters: Any) -> Coalesce:
    """COUNT of `model` rows pointing at the outer row, as a correlated subquery.

    Subqueries instead of Count() over joins: several Count()s over joins multiply rows (students x
    documents x sessions per course) and a filter() on the same relation silently narrows them.
    """
    rows = (
        model._default_manager.filter(**{fk: OuterRef("pk")}, **filters)
        .order_by()
        .values(fk)
        .annotate(n=Count("pk"))
        .values("n")[:1]
    )
    return Coalesce(Subquery(rows, output_field=IntegerField()), Value(0))


def course_list_for_user(*, user: User) -> QuerySet[Course]:
    """Courses the user may see: staff all of their tenant's, professors theirs, students enrolled."""
    if not user.is_authenticated:
        return Course.objects.none()
    if user.is_superuser and user.tenant_id is None:
        qs = Course.objects.all()
    else:
        qs = Course.objects.for_tenant(user.tenant_id)
        if user.role == User.Role.PROFESSOR:
            qs = qs.filter(professors__user=user)
        elif user.role == User.Role.STUDENT:
            qs = qs.filter(enrollments__student__user=user, enrollments__status=Enrollment.Status.ACTIVE)
        elif user.role != User.Role.STAFF:
            return Course.objects.none()
    return (
        qs.select_related("tenant")
        .annotate(student_count=_count_subquery(Enrollment, "course", status=Enrollment.Status.ACTIVE))
        .order_by("code")
        .distinct()
    )


def course_get_for_user(*, user: User, course_id: int) -> Course:
    """One course the user may see, or NotFound (never reveals another tenant's course exists)."""
    try:
        return course_list_for_user(user=user).get(pk=course_id)
    except (Course.DoesNotExist, ValueError, TypeError):
        raise NotFound("No such course.") from None


def user_can_teach(*, user: User, course: Course) -> bool:
    """Professors of the course and staff of its tenant may manage it."""
    if user.is_superuser:
        return True
    if user.tenant_id != course.tenant_id:
        return False
    if user.role == User.Role.STAFF:
        return True
    return course.professors.filter(user=user).exists()


def _professors_prefetch() -> Prefetch:
    return Prefetch("professors", queryset=Professor.objects.select_related("user"))


def course_overview_list_for_user(*, user: User) -> QuerySet[Course]:
    """The user's courses with the numbers a home page shows, in a constant number of queries.

    Adds `document_count`, `session_count`, `live_session_count`, `last_session_title` and
    `last_session_at` to `course_list_for_user`, and prefetches the professors with their users.
    """
    live_session = _related_model(Course, "live_sessions")
    last_session = live_session._default_manager.filter(course=OuterRef("pk")).order_by("-created_at", "-pk")
    return (
        course_list_for_user(user=user)
        .annotate(
            document_count=_count_subquery(CourseDocument, "course"),
            session_count=_count_subquery(live_session, "course"),
            live_session_count=_count_subquery(live_session, "course", status="live"),
            last_session_title=Subquery(last_session.values("title")[:1]),
            last_session_at=Subquery(
                last_session.annotate(at=Coalesce("started_at", "created_at")).values("at")[:1]
            ),
        )
        .prefetch_related(_professors_prefetch())
    )


def course_documents_for_user(*, user: User, course: Course) -> list[CourseDocument]:
    """Documents of a course the user already may see (`course` comes from course_get_for_user),
    each with `chunk_count`; one query."""
    del user  # every reader of the course sees its material; kept for a future per-role rule
    return list(
        course.documents.annotate(chunk_count=_count_subquery(DocumentChunk, "document")).order_by("title", "pk")
    )


def course_document_get_for_user(*, user: User, course_id: int, document_id: int) -> CourseDocument:
    """One document of a course the user may see, or NotFound."""
    course = course_get_for_user(user=user, course_id=course_id)
    try:
        return course.documents.get(pk=document_id)
    except (CourseDocument.DoesNotExist, ValueError, TypeError):
        raise NotFound("No such document.") from None


def document_list_for_user(*, user: User) -> QuerySet[CourseDocument]:
    """Documents of every course the user may see, with `chunk_count` and their course."""
    return (
        CourseDocument.objects.filter(course__in=course_list_for_user(user=user).values("pk"))
        .select_related("course")
        .annotate(chunk_count=_count_subquery(DocumentChunk, "document"))
        .order_by("course_id", "title", "pk")
    )


def document_get_for_user(*, user: User, document_id: int) -> CourseDocument:
    """One document of a course the user may see, or NotFound (also for another tenant's)."""
    try:
        return document_list_for_user(user=user).get(pk=document_id)
    except (CourseDocument.DoesNotExist, ValueError, TypeError):
        raise NotFound("No such document.") from None


@dataclass
class CourseDetail:
    """What the course page shows; lists are empty where the user may not see them."""

    course: Course
    can_teach: bool
    professors: list[Professor]
    documents: list[CourseDocument]
    enrollments: list[Enrollment] = field(default_factory=list)
    sessions: list[Any] = field(default_factory=list)
    session_total: int = 0
    own_conversations: list[Any] = field(default_factory=list)
    own_assignments: list[Any] = field(default_factory=list)

    @property
    def active_student_count(self) -> int:
        return sum(1 for e in self.enrollments if e.status == Enrollment.Status.ACTIVE)

    @property
    def documents_in_progress(self) -> bool:
        return documents_in_progress(self.documents)


def documents_in_progress(documents: list[CourseDocument]) -> bool:
    """Whether any document still waits for, or is in, ingestion (the page keeps polling then)."""
    busy = {CourseDocument.Status.PENDING, CourseDocument.Status.PROCESSING}
    return any(d.status in busy for d in documents)


SESSIONS_SHOWN = 50


def course_detail_for_user(*, user: User, course_id: int) -> CourseDetail:
    """The course page's data: teachers see roster and sessions, students their own activity.

    Raises NotFound like `course_get_for_user`; a constant number of queries whatever the sizes.
    """
    try:
        course = course_list_for_user(user=user).select_related("default_persona").get(pk=course_id)
    except (Course.DoesNotExist, ValueError, TypeError):
        raise NotFound("No such course.") from None
    professors = list(course.professors.select_related("user"))
    can_teach = user.is_superuser or (
        user.tenant_id == course.tenant_id
        and (user.role == User.Role.STAFF or any(p.user_id == user.pk for p in professors))
    )
    detail = CourseDetail(
        course=course,
        can_teach=can_teach,
        professors=professors,
        documents=course_documents_for_user(user=user, course=course),
    )
    if can_teach:
        detail.enrollments = list(
            course.enrollments.select_related("student__user").order_by(
                "status", "student__user__last_name", "student__user__first_name", "student__user__username"
            )
        )
        sessions = (
            course.live_sessions.select_related("professor__user")
            .annotate(room_total=Count("rooms"))
            .order_by("-created_at", "-pk")
        )
        detail.sessions = list(sessions[:SESSIONS_SHOWN])
        detail.session_total = (
            len(detail.sessions) if len(detail.sessions) < SESSIONS_SHOWN else sessions.count()
        )
    elif user.role == User.Role.STUDENT:
        detail.own_conversations = list(
            course.conversations.filter(student__user=user, room__isnull=True)
            .annotate(message_total=Count("messages"))
            .order_by("-updated_at")[:10]
        )
        assignment = _related_model(Student, "room_assignments")
        detail.own_assignments = list(
            assignment._default_manager.filter(student__user=user, session__course=course)
            .select_related("room", "session")
            .order_by("-session__created_at")[:10]
        )
    return detail
