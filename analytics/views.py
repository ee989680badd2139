"""Portal pages of analytics: the session report (and its print version, a student's evidence
lines, a confusion topic's lines), a student's report across a course, the course overview.

Views stay thin: access and data are in analytics.reports; NotFound / Forbidden become the 404 /
403 pages (courses.middleware), an anonymous visitor is sent to the login page.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from analytics import reports, services
from courses.exceptions import Forbidden, NotFound
from courses.selectors import course_get_for_user, user_can_teach
from sessions.models import LiveSession

EXPORT_FORMATS = ("csv", "json")


def _session_report_context(request: HttpRequest, session_id: int) -> dict:
    session = reports.session_get_for_report(user=request.user, session_id=session_id)
    if session.status == LiveSession.Status.ENDED:
        # An ended session whose computation was never queued (or is from an older version)
        # is queued now, so the page polls towards a result instead of waiting for nothing.
        services.session_analytics_ensure(session=session)
    return {
        "session": session,
        "course": session.course,
        "report": reports.session_report(session=session),
        "export_formats": EXPORT_FORMATS,
    }


@require_safe
@login_required
def session_report(request: HttpRequest, session_id: int) -> HttpResponse:
    return render(request, "analytics/session_report.html", _session_report_context(request, session_id))


@require_safe
@login_required
def session_report_print(request: HttpRequest, session_id: int) -> HttpResponse:
    return render(request, "analytics/session_report_print.html", _session_report_context(request, session_id))


@require_safe
@login_required
def session_report_status(request: HttpRequest, session_id: int) -> HttpResponse:
    """The header's progress bar, polled by htmx while the analytics compute; once ready (or
    failed) it asks htmx to reload the page, which then shows the results."""
    session = reports.session_get_for_report(user=request.user, session_id=session_id)
    status = reports.report_status(session=session)
    response = render(request, "analytics/_report_status.html", {"session": session, "status": status})
    if not status["busy"] and request.GET.get("was") == "busy":
        response["HX-Refresh"] = "true"
    return response


@require_safe
@login_required
def session_report_student(request: HttpRequest, session_id: int, student_id: int) -> HttpResponse:
    """A student's evidence lines: for the session's teachers, and for the student themself."""
    session, can_teach = reports.session_get_for_evidence(user=request.user, session_id=session_id, student_id=student_id)
    data = reports.student_evidence(session=session, student_id=student_id, own=not can_teach)
    return render(
        request, "analytics/student_evidence.html",
        {"session": session, "course": session.course, "data": data, "can_teach": can_teach},
    )


@require_safe
@login_required
def session_report_lines(request: HttpRequest, session_id: int) -> HttpResponse:
    session = reports.session_get_for_report(user=request.user, session_id=session_id)
    topic = request.GET.get("topic", "").strip()
    if not topic:
        raise NotFound("Which topic? Add ?topic= to the address.")
    data = reports.topic_lines(session=session, topic=topic)
    return render(request, "analytics/topic_lines.html", {"session": session, "course": session.course, "data": data})


@require_safe
@login_required
def student_report(request: HttpRequest, course_id: int, student_id: int) -> HttpResponse:
    course = course_get_for_user(user=request.user, course_id=course_id)
    can_teach = user_can_teach(user=request.user, course=course)
    student = reports.course_student_get_for_report(
        user=request.user, course=course, can_teach=can_teach, student_id=student_id
    )
    data = reports.student_report(course=course, student=student, by=request.GET.get("by", "session"))
    return render(
        request, "analytics/student_report.html",
        {"course": course, "data": data, "can_teach": can_teach, "views": reports.STUDENT_REPORT_VIEWS},
    )


@require_safe
@login_required
def course_analytics(request: HttpRequest, course_id: int) -> HttpResponse:
    course = course_get_for_user(user=request.user, course_id=course_id)
    if not user_can_teach(user=request.user, course=course):
        raise Forbidden("Only the course's professors see its analytics.")
    return render(request, "analytics/course_overview.html", {"course": course, "data": reports.course_overview(course=course)})


@require_safe
@login_required
def session_analytics_export(request: HttpRequest, session_id: int, fmt: str) -> HttpResponse:
    """The API's export files (analytics/exports.py), for the report's download links."""
    from analytics import exports, selectors

    access = selectors.analytics_access_full(user=request.user, session_id=session_id)
    return exports.analytics_export(access=access, fmt=fmt)
