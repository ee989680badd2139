"""Portal pages (login, home, course page) and the error handlers of the whole site.

Views stay thin: access checks and reads live in `courses.selectors`.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.template import loader
from django.views.decorators.http import require_safe

from courses import selectors
from courses.api.errors import error_response
from courses.forms import LoginForm
from courses.models import User

# --- Authentication ------------------------------------------------------------------------


class LoginView(auth_views.LoginView):
    form_class = LoginForm
    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        # The demo passwords are public; say so only on a development server.
        context["show_demo_logins"] = settings.DEBUG
        return context


class LogoutView(auth_views.LogoutView):
    """POST only (Django's own rule since 5.0): a link or an image cannot log anybody out."""


# --- Pages ---------------------------------------------------------------------------------


@require_safe
@login_required
def home(request: HttpRequest) -> HttpResponse:
    user: User = request.user  # type: ignore[assignment]
    courses = list(selectors.course_overview_list_for_user(user=user))
    if user.is_superuser and user.tenant_id is None:
        audience = "superuser"
    elif user.role in (User.Role.PROFESSOR, User.Role.STUDENT, User.Role.STAFF):
        audience = user.role
    else:
        audience = "other"
    return render(
        request,
        "courses/home.html",
        {
            "courses": courses,
            "audience": audience,
            "show_admin": user.is_staff or user.is_superuser,
            "live_now": [c for c in courses if c.live_session_count],
            "live_sessions": _live_sessions(user) if any(c.live_session_count for c in courses) else [],
        },
    )


def _live_sessions(user: User) -> list[dict]:
    """The live sessions the user takes part in, with the student's own room: two queries
    whatever the number. (Sessions are read through their own app's selectors; imported here,
    not at the top, so `courses` keeps no import-time dependency on `sessions`.)"""
    from sessions.selectors import sessions_visible_to, student_rooms

    sessions = list(sessions_visible_to(user=user).filter(status="live").order_by("-started_at", "-pk")[:10])
    rooms = student_rooms(user=user, session_ids=[s.pk for s in sessions]) if user.role == User.Role.STUDENT else {}
    return [{"session": s, "room": rooms.get(s.pk)} for s in sessions]


@require_safe
@login_required
def course_detail(request: HttpRequest, course_id: int) -> HttpResponse:
    detail = selectors.course_detail_for_user(user=request.user, course_id=course_id)
    return render(request, "courses/course_detail.html", {"detail": detail, "course": detail.course})


@require_safe
@login_required
def course_documents(request: HttpRequest, course_id: int) -> HttpResponse:
    """The documents section alone, polled by htmx while an ingestion runs."""
    course = selectors.course_get_for_user(user=request.user, course_id=course_id)
    documents = selectors.course_documents_for_user(user=request.user, course=course)
    return render(
        request,
        "courses/_documents.html",
        {
            "course": course,
            "documents": documents,
            "documents_in_progress": selectors.documents_in_progress(documents),
        },
    )


@require_safe
@login_required
def course_document_file(request: HttpRequest, course_id: int, document_id: int) -> FileResponse:
    """The uploaded file, behind the course's access rule (MEDIA_URL is not access-checked)."""
    document = selectors.course_document_get_for_user(
        user=request.user, course_id=course_id, document_id=document_id
    )
    if not document.file or not document.file.storage.exists(document.file.name):
        raise Http404("The file of this document is missing.")
    return FileResponse(
        document.file.open("rb"),
        filename=document.file.name.rsplit("/", 1)[-1],
        content_type=document.content_type or None,
    )


# --- Error handlers (tutor_project.urls handler400/403/404/500) ----------------------------


def _wants_json(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def error_400(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _wants_json(request):
        return error_response("bad_request", "The request could not be understood.", 400)
    return render(request, "400.html", status=400)


def error_403(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _wants_json(request):
        return error_response("forbidden", "You may not do this.", 403)
    return render(request, "403.html", status=403)


def error_404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _wants_json(request):
        return error_response("not_found", "Not found.", 404)
    return render(request, "404.html", status=404)


def error_500(request: HttpRequest) -> HttpResponse:
    if _wants_json(request):
        return error_response("server_error", "Something went wrong on our side.", 500)
    # No request context: whatever broke (database, a context processor) must not break this too.
    return HttpResponse(loader.get_template("500.html").render(), status=500)
