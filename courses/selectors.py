"""Reads of the courses app, with the access rules in one place for portal, API and consumers."""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet

from courses.exceptions import NotFound
from courses.models import Course, Enrollment, User


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
            qs = qs.filter(
                enrollments__student__user=user, enrollments__status=Enrollment.Status.ACTIVE
            )
        elif user.role != User.Role.STAFF:
            return Course.objects.none()
    return (
        qs.select_related("tenant")
        .annotate(
            student_count=Count(
                "enrollments", filter=Q(enrollments__status=Enrollment.Status.ACTIVE), distinct=True
            )
        )
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
