"""Portal pages of the sessions app: a student's practice conversations with the course tutor,
and the tutor's status on the professor's course page.

Views stay thin: access rules are selectors shared with the API and the consumers, writes are
services; a DomainError becomes the right error page (courses.middleware) or a form message.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST, require_safe

from courses.exceptions import DomainError, Forbidden
from courses.selectors import course_get_for_user, user_can_teach
from sessions import routing, selectors, services

PRACTICE_MODE_CHOICES = services.PRACTICE_MODE_CHOICES


def _tutor_name(course) -> str:
    return course.default_persona.name if course.default_persona_id else "Tutor"


@require_safe
@login_required
def practice_list(request: HttpRequest, course_id: int) -> HttpResponse:
    course = course_get_for_user(user=request.user, course_id=course_id)
    student = selectors.student_for_user(user=request.user)
    conversations = list(selectors.conversation_list_for_student(student=student, course_id=course.pk))
    return render(
        request,
        "sessions/practice_list.html",
        {
            "course": course,
            "conversations": conversations,
            "modes": PRACTICE_MODE_CHOICES,
            "tutor_name": _tutor_name(course),
            "offline_only": selectors.tutor_offline_only(tenant_id=course.tenant_id),
        },
    )


@require_POST
@login_required
def practice_new(request: HttpRequest, course_id: int) -> HttpResponse:
    course = course_get_for_user(user=request.user, course_id=course_id)
    student = selectors.student_for_user(user=request.user)
    try:
        conversation, _created = services.conversation_create(
            student=student, course=course, mode=request.POST.get("mode")
        )
    except DomainError as exc:
        messages.error(request, exc.message)
        return redirect("practice-list", course_id=course.pk)
    return redirect("conversation-detail", conversation_id=conversation.pk)


@require_POST
@login_required
def practice_clear(request: HttpRequest, course_id: int) -> HttpResponse:
    course = course_get_for_user(user=request.user, course_id=course_id)
    student = selectors.student_for_user(user=request.user)
    try:
        deleted = services.conversations_clear(student=student, course=course, mode=request.POST.get("mode", ""))
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Deleted {deleted} conversation{'s' if deleted != 1 else ''}.")
    return redirect("practice-list", course_id=course.pk)


@require_safe
@login_required
def conversation_detail(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = selectors.conversation_get_for_student(user=request.user, conversation_id=conversation_id)
    services.conversation_open(conversation=conversation)
    course = conversation.course
    return render(
        request,
        "sessions/conversation.html",
        {
            "conversation": conversation,
            "course": course,
            # Not "messages": that name is django.contrib.messages' flash list in every template.
            "chat_messages": list(selectors.conversation_messages(conversation=conversation)),
            "last_seq": conversation.last_seq,
            "ws_path": routing.conversation_ws_path(conversation.pk),
            "conversations": list(
                selectors.conversation_list_for_student(student=conversation.student, course_id=course.pk)[:30]
            ),
            "modes": PRACTICE_MODE_CHOICES,
            "max_chars": int(settings.TUTOR_MAX_MESSAGE_CHARS),
            "tutor_name": _tutor_name(course),
            "offline_only": selectors.tutor_offline_only(tenant_id=course.tenant_id),
        },
    )


@require_POST
@login_required
def conversation_rename(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = selectors.conversation_get_for_student(user=request.user, conversation_id=conversation_id)
    services.conversation_update(conversation=conversation, title=request.POST.get("title", ""))
    if request.POST.get("next") == "list":
        return redirect("practice-list", course_id=conversation.course_id)
    return redirect("conversation-detail", conversation_id=conversation.pk)


@require_POST
@login_required
def conversation_mode(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = selectors.conversation_get_for_student(user=request.user, conversation_id=conversation_id)
    try:
        services.conversation_update(conversation=conversation, mode=request.POST.get("mode", ""))
    except DomainError as exc:
        messages.error(request, exc.message)
    return redirect("conversation-detail", conversation_id=conversation.pk)


@require_POST
@login_required
def conversation_delete(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = selectors.conversation_get_for_student(user=request.user, conversation_id=conversation_id)
    course_id = conversation.course_id
    services.conversation_delete(conversation=conversation)
    messages.success(request, "Conversation deleted.")
    return redirect("practice-list", course_id=course_id)


@require_safe
@login_required
def course_tutor_status(request: HttpRequest, course_id: int) -> HttpResponse:
    """The "Tutor status" card of the course page (htmx): model chain, budget, recent failures."""
    course = course_get_for_user(user=request.user, course_id=course_id)
    if not user_can_teach(user=request.user, course=course):
        raise Forbidden("Only the course's professors see the tutor's status.")
    return render(request, "sessions/_tutor_status.html", selectors.tutor_status_for_course(course=course))


# --- Transcript exports (the same files as the API's) -------------------------------------------


@require_safe
@login_required
def session_transcript_export(request: HttpRequest, session_id: int, fmt: str) -> HttpResponse:
    from sessions.api.live import export_session

    return export_session(user=request.user, session_id=session_id, fmt=fmt)


@require_safe
@login_required
def room_transcript_export(request: HttpRequest, room_id: int, fmt: str) -> HttpResponse:
    from sessions.api.live import export_room

    return export_room(user=request.user, room_id=room_id, fmt=fmt)
