"""Portal pages (login, home, course page) and the error handlers of the whole site.

Views stay thin: access checks and reads live in `courses.selectors`.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template import loader
from django.urls import reverse
from django.views.decorators.http import require_POST, require_safe

from courses import documents as document_services
from courses import selectors
from courses.api.errors import error_response
from courses.exceptions import Forbidden
from courses.forms import LoginForm
from courses.models import User
from courses.retrieval import passages_search, retrieval_mode

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
    return render(
        request,
        "courses/course_detail.html",
        {"detail": detail, "course": detail.course, **_upload_limits()},
    )


def _upload_limits() -> dict[str, object]:
    """What the upload box checks before sending (the API checks again)."""
    return {
        "max_upload_bytes": int(settings.MAX_UPLOAD_BYTES),
        "document_extensions": ",".join(settings.DOCUMENT_EXTENSIONS),
    }


@require_safe
@login_required
def course_documents(request: HttpRequest, course_id: int) -> HttpResponse:
    """The documents section alone, polled by htmx while an ingestion runs."""
    course = selectors.course_get_for_user(user=request.user, course_id=course_id)
    documents = selectors.course_documents_for_user(user=request.user, course=course)
    if selectors.documents_in_progress(documents) and document_services.documents_resume_stalled(course=course):
        documents = selectors.course_documents_for_user(user=request.user, course=course)
    return render(
        request,
        "courses/_documents.html",
        {
            "course": course,
            "documents": documents,
            "documents_in_progress": selectors.documents_in_progress(documents),
            "can_manage": selectors.user_can_teach(user=request.user, course=course),
            **_upload_limits(),
        },
    )


@require_POST
@login_required
def course_document_delete(request: HttpRequest, course_id: int, document_id: int) -> HttpResponse:
    """Delete a document (its professors), then back to the course page."""
    document = selectors.course_document_get_for_user(
        user=request.user, course_id=course_id, document_id=document_id
    )
    title = document.title
    document_services.document_delete(user=request.user, document=document)
    messages.success(request, f"“{title}” was deleted, with its passages.")
    return redirect(f"{reverse('course-detail', args=[course_id])}#documents")


@require_safe
@login_required
def course_documents_search(request: HttpRequest, course_id: int) -> HttpResponse:
    """What the tutor would read for a question: the course's best passages (its professors)."""
    course = selectors.course_get_for_user(user=request.user, course_id=course_id)
    if not selectors.user_can_teach(user=request.user, course=course):
        raise Forbidden("Only the course's professors may search its materials here.")
    query = request.GET.get("q", "").strip()[:500]
    hits = (
        passages_search(
            course_id=course.pk, tenant_id=course.tenant_id, query=query, limit=int(settings.TUTOR_PASSAGES)
        )
        if query
        else []
    )
    return render(
        request,
        "courses/_documents_search.html",
        {"course": course, "query": query, "hits": hits, "mode": retrieval_mode()},
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
