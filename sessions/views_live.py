"""Portal pages of live sessions: the builder, the session page (rooms, moves, start, end), the
professor's monitor with its steering console, and a breakout room's page.

Views stay thin: access rules are the selectors shared with the API and the consumers
(`session_get_for_professor`, `session_get_for_monitor`, `room_get_for_participant`), writes are
the orchestration and live services. A DomainError becomes a form error or a flash message;
NotFound / Forbidden become the 404 / 403 pages (courses.middleware). The monitor and room pages
render what the sockets would have sent so far and carry `data-last-seq`, so their sockets
reconnect with `?after_seq=` and nothing said in between is lost.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from courses.exceptions import DomainError, Forbidden
from courses.models import Enrollment, Professor, Student, TeachingMode
from courses.selectors import course_get_for_user, user_can_teach
from sessions import live, orchestration, routing, selectors
from sessions.models import AvatarPersona, BreakoutRoom, LiveSession

SESSION_MODE_CHOICES = [(m.value, m.label) for m in TeachingMode if m.value in orchestration.SESSION_MODES]
EXPORT_FORMATS = ("vtt", "csv", "json")
TUTOR_STATUS_LABELS = dict(BreakoutRoom.TutorStatus.choices)


def _mode_label(mode: str) -> str:
    return dict(TeachingMode.choices).get(mode, mode)


# --- Builder ------------------------------------------------------------------------------------


class SessionCreateForm(forms.Form):
    """What a professor chooses for a new session; the service checks it all again."""

    title = forms.CharField(max_length=orchestration.TITLE_MAX_CHARS, strip=True)
    persona = forms.ModelChoiceField(
        queryset=AvatarPersona.objects.none(), required=False, empty_label="The course's tutor"
    )
    teaching_mode = forms.ChoiceField(choices=SESSION_MODE_CHOICES)
    sizing = forms.ChoiceField(
        choices=[("rooms", "A number of rooms"), ("per_room", "A number of students per room")],
        initial="rooms",
        widget=forms.RadioSelect,
    )
    room_count = forms.IntegerField(min_value=1, max_value=orchestration.MAX_ROOMS, required=False, initial=4)
    students_per_room = forms.IntegerField(min_value=1, max_value=orchestration.MAX_ROOMS, required=False)
    assignment_strategy = forms.ChoiceField(choices=LiveSession.Assignment.choices, initial="round_robin")
    topics = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="One topic per line, for rooms 1, 2, 3… More topics than rooms adds rooms.",
    )

    def __init__(self, *args: Any, course, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["persona"].queryset = AvatarPersona.objects.filter(is_active=True).filter(
            Q(tenant__isnull=True) | Q(tenant_id=course.tenant_id)
        ).order_by("name")
        self.fields["teaching_mode"].initial = course.default_teaching_mode

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("sizing") == "per_room":
            data["room_count"] = None
            if not data.get("students_per_room") and "students_per_room" not in self.errors:
                self.add_error("students_per_room", "How many students in each room?")
        else:
            data["students_per_room"] = None
            if not data.get("room_count") and "room_count" not in self.errors:
                self.add_error("room_count", "How many rooms?")
        lines = [line.strip() for line in (data.get("topics") or "").splitlines()]
        while lines and not lines[-1]:
            lines.pop()
        if any(len(line) > orchestration.TOPIC_MAX_CHARS for line in lines):
            self.add_error("topics", f"A topic has at most {orchestration.TOPIC_MAX_CHARS} characters.")
        if len(lines) > orchestration.MAX_ROOMS:
            self.add_error("topics", f"At most {orchestration.MAX_ROOMS} topics (one per room).")
        data["topic_list"] = lines
        return data


def _professor_for(user, course) -> Professor:
    """The professor a new session belongs to: the user, or for staff the course's first one."""
    own = next((p for p in course.professors.all() if p.user_id == user.pk), None)
    if own is not None:
        return own
    first = course.professors.order_by("pk").first()
    if first is None:
        raise DomainError("The course has no professor; assign one in the admin first.", code="no_professor")
    return first


def _form_errors_from(form: forms.Form, exc: DomainError) -> None:
    """A service's field errors onto the form (sizes, title...); the rest as a form error."""
    placed = False
    for name, errors in (exc.fields or {}).items():
        if name in form.fields:
            for error in errors:
                form.add_error(name, error)
            placed = True
    if not placed:
        form.add_error(None, exc.message)


@require_http_methods(["GET", "HEAD", "POST"])
@login_required
def session_new(request: HttpRequest, course_id: int) -> HttpResponse:
    course = course_get_for_user(user=request.user, course_id=course_id)
    if not user_can_teach(user=request.user, course=course):
        raise Forbidden("Only the course's professors create its live sessions.")
    form = SessionCreateForm(request.POST or None, course=course)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            session = orchestration.session_create(
                course=course,
                professor=_professor_for(request.user, course),
                title=data["title"],
                room_count=data["room_count"],
                students_per_room=data["students_per_room"],
                teaching_mode=data["teaching_mode"],
                persona=data["persona"],
                assignment_strategy=data["assignment_strategy"],
                topics=data["topic_list"],
                by=request.user,
            )
        except DomainError as exc:
            _form_errors_from(form, exc)
        else:
            messages.success(request, f"“{session.title}” is ready: check the rooms, then start it.")
            return redirect("session-detail", session_id=session.pk)
    student_count = Enrollment.objects.filter(
        course=course, status=Enrollment.Status.ACTIVE, student__user__is_active=True
    ).count()
    return render(
        request,
        "sessions/session_new.html",
        {"course": course, "form": form, "student_count": student_count},
        status=400 if request.method == "POST" else 200,
    )


# --- Session page ---------------------------------------------------------------------------------


def _degraded_rows(session_data: dict[str, Any]) -> list[dict[str, str]]:
    """`session.degraded` as rows the templates list: each failed room tutor with its reason."""
    degraded = session_data.get("degraded") or {}
    names = {str(room["id"]): room["name"] for room in session_data["rooms"]}
    rows = [
        {"what": f"{names.get(room_id, 'Room ' + room_id)} tutor", "reason": reason}
        for room_id, reason in (degraded.get("tutors") or {}).items()
    ]
    if degraded.get("transcription"):
        rows.append({"what": "Transcription", "reason": str(degraded["transcription"])})
    return rows


def _label_rooms(rooms: list[dict[str, Any]]) -> None:
    for room in rooms:
        room["mode_label"] = _mode_label(room["teaching_mode"])
        room["tutor_label"] = TUTOR_STATUS_LABELS.get(room["tutor_status"], room["tutor_status"])


@require_safe
@login_required
def session_detail(request: HttpRequest, session_id: int) -> HttpResponse:
    session = selectors.session_get_for_professor(user=request.user, session_id=session_id)
    data = selectors.session_status_for_monitor(session=session)
    _label_rooms(data["rooms"])
    assigned = {student["id"] for room in data["rooms"] for student in room["students"]}
    unassigned = [
        {"id": s.pk, "name": s.user.display_name}
        for s in Student.objects.filter(
            enrollments__course_id=session.course_id,
            enrollments__status=Enrollment.Status.ACTIVE,
            user__is_active=True,
        )
        .select_related("user")
        .order_by("user__last_name", "user__first_name", "user__username")
        if s.pk not in assigned
    ]
    return render(
        request,
        "sessions/session_detail.html",
        {
            "session": session,
            "course": session.course,
            "data": data,
            "rooms": data["rooms"],
            "unassigned": unassigned,
            "degraded_rows": _degraded_rows(data),
            "editable": session.status != LiveSession.Status.ENDED,
            "modes": SESSION_MODE_CHOICES,
            "mode_label": _mode_label(data["teaching_mode"]),
            "export_formats": EXPORT_FORMATS,
        },
    )


@require_POST
@login_required
def session_start(request: HttpRequest, session_id: int) -> HttpResponse:
    session = selectors.session_get_for_professor(user=request.user, session_id=session_id)
    try:
        result = orchestration.session_start(session=session, by=request.user).as_dict()
    except DomainError as exc:
        messages.error(request, exc.message)
        return redirect("session-detail", session_id=session.pk)
    counts = result["counts"]
    summary = (
        f"{counts['rooms']} room{'s' if counts['rooms'] != 1 else ''}, "
        f"{counts['students']} student{'s' if counts['students'] != 1 else ''}, "
        f"{counts['tutors_ready']} tutor{'s' if counts['tutors_ready'] != 1 else ''} ready"
    )
    if not result["started_now"]:
        messages.info(request, f"The session was already live: {summary}.")
    elif counts["tutors_failed"]:
        messages.warning(
            request, f"The session is live with {summary}; {counts['tutors_failed']} tutor(s) failed to start (see below)."
        )
    else:
        messages.success(request, f"The session is live: {summary}.")
    return redirect("session-monitor", session_id=session.pk)


@require_POST
@login_required
def session_end(request: HttpRequest, session_id: int) -> HttpResponse:
    session = selectors.session_get_for_professor(user=request.user, session_id=session_id)
    was_ended = session.status == LiveSession.Status.ENDED
    orchestration.session_end(session=session, by=request.user)
    if not was_ended:
        messages.success(request, "The session has ended. Its transcripts are ready to export.")
    return redirect("session-detail", session_id=session.pk)


@require_POST
@login_required
def session_move(request: HttpRequest, session_id: int) -> HttpResponse:
    """Move a student to another room (or out of every room), before or during the session."""
    session = selectors.session_get_for_professor(user=request.user, session_id=session_id)
    student_id = request.POST.get("student_id", "")
    room_id = request.POST.get("room_id", "")
    try:
        orchestration.assignment_move_by_ids(
            session=session,
            student_id=int(student_id) if student_id.isdigit() else student_id,
            room_id=int(room_id) if room_id.isdigit() else (None if room_id in ("", "none") else room_id),
            by=request.user,
        )
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Moved." if room_id not in ("", "none") else "Taken out of the rooms.")
    back = "session-monitor" if request.POST.get("next") == "monitor" else "session-detail"
    return redirect(back, session_id=session.pk)


@require_POST
@login_required
def session_room_edit(request: HttpRequest, session_id: int, room_id: int) -> HttpResponse:
    """A room's name, topic, goal and own teaching mode."""
    session = selectors.session_get_for_professor(user=request.user, session_id=session_id)
    room = session.rooms.filter(pk=room_id).first()
    if room is None:
        messages.error(request, "That room is not part of this session.")
        return redirect("session-detail", session_id=session.pk)
    changes = {name: request.POST[name] for name in ("name", "topic", "goal", "teaching_mode") if name in request.POST}
    try:
        orchestration.room_update(room=room, **changes)
    except DomainError as exc:
        messages.error(request, f"{room.name}: {exc.message}")
    else:
        messages.success(request, f"{room.name} saved.")
    return redirect(f"{reverse('session-detail', args=[session.pk])}#room-{room.pk}")


# --- Monitor ----------------------------------------------------------------------------------------


@require_safe
@login_required
def session_monitor(request: HttpRequest, session_id: int) -> HttpResponse:
    """Every room at once (a constant number of queries whatever the number of rooms)."""
    session = selectors.session_get_for_monitor(user=request.user, session_id=session_id)
    data = selectors.monitor_page(session=session)
    last_seq = data["last_seq"]
    _label_rooms(data["rooms"])
    for room in data["rooms"]:
        # Lines written after the snapshot's seq come again through the socket's replay.
        room["lines"] = [line for line in room["lines"] if line["seq"] <= last_seq]
    return render(
        request,
        "sessions/monitor.html",
        {
            "session": session,
            "course": session.course,
            "data": data,
            "rooms": data["rooms"],
            "degraded_rows": _degraded_rows(data),
            "modes": SESSION_MODE_CHOICES,
            "mode_label": _mode_label(data["teaching_mode"]),
            # voice-live: the lecture block's lines (later ones come through the socket's replay)
            "lecture_lines": selectors.lecture_lines(
                session_id=session.pk, up_to_seq=last_seq, limit=live.monitor_lines_per_room()
            ),
            "monitor_config": {
                "ws_path": routing.monitor_ws_path(session.pk),
                "last_seq": last_seq,
                "session_id": session.pk,
                "status": session.status,
                "lines_per_room": live.monitor_lines_per_room(),
                "modes": dict(SESSION_MODE_CHOICES),
                "tutor_statuses": TUTOR_STATUS_LABELS,
            },
            "export_formats": EXPORT_FORMATS,
            "radar": _radar(session.pk),
            "clarify_text_max": live.CLARIFY_TEXT_MAX_CHARS,
        },
    )


def _radar(session_id: int) -> dict[str, Any]:
    """The confusion radar as the monitor's socket would send it (analytics fills it in through
    `monitor_snapshot`; empty without signals), with each topic's bar scale."""
    radar: dict[str, Any] = {"radar": [], "alerts": [], "window_minutes": int(settings.ANALYTICS_RADAR_WINDOW_MINUTES)}
    for kind, data in live.monitor_snapshot_events(session_id=session_id):
        if kind == "analytics.update":
            radar = data
    radar["max_count"] = max([row["count"] for row in radar["radar"]], default=1)
    return radar


def _steer(request: HttpRequest, session_id: int, action) -> HttpResponse:
    """The console's forms without JavaScript (monitor.js sends the same over the socket)."""
    session = selectors.session_get_for_monitor(user=request.user, session_id=session_id)
    try:
        done = action(session)
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, done)
    return redirect("session-monitor", session_id=session.pk)


@require_POST
@login_required
def session_broadcast(request: HttpRequest, session_id: int) -> HttpResponse:
    def act(session):
        sent = live.room_broadcast(
            session=session, by=request.user, text=request.POST.get("text", ""),
            room_id=request.POST.get("room_id", "all"),
        )
        return f"Sent to {len(sent)} room{'s' if len(sent) != 1 else ''}."

    return _steer(request, session_id, act)


@require_POST
@login_required
def session_mode(request: HttpRequest, session_id: int) -> HttpResponse:
    def act(session):
        mode = request.POST.get("mode", "")
        ids = live.session_mode_switch(session=session, mode=mode, room_id=request.POST.get("room_id", "all"))
        return f"{_mode_label(mode)} mode in {len(ids)} room{'s' if len(ids) != 1 else ''}."

    return _steer(request, session_id, act)


@require_POST
@login_required
def session_hint(request: HttpRequest, session_id: int) -> HttpResponse:
    def act(session):
        text = "" if "clear" in request.POST else request.POST.get("text", "")
        return "Hint pushed to every tutor." if live.session_hint_set(session=session, text=text) else "Hint cleared."

    return _steer(request, session_id, act)


@require_POST
@login_required
def session_clarify(request: HttpRequest, session_id: int) -> HttpResponse:
    """The radar's "Clarify for everyone" without JavaScript (monitor.js sends `confusion.clarify`)."""

    def act(session):
        done = live.session_clarify(
            session=session, by=request.user, topic=request.POST.get("topic", ""), text=request.POST.get("text", "")
        )
        return f"Every tutor will clarify {done['topic']}; the rooms were told."

    return _steer(request, session_id, act)


# --- Room page --------------------------------------------------------------------------------------


@require_safe
@login_required
def room_detail(request: HttpRequest, room_id: int) -> HttpResponse:
    """A breakout room: its students talk with the tutor here; the professor and staff read along."""
    room = selectors.room_get_for_participant(user=request.user, room_id=room_id)
    session = room.session
    last_seq = session.last_seq  # read before the lines: later ones come with the replay
    status = selectors.room_status(room=room)
    lines = [
        live.segment_event(segment)
        for segment in selectors.segments_after(session_id=session.pk, room_id=room.pk)
        if segment.seq <= last_seq
    ]
    can_post = not selectors.user_can_monitor(user=request.user, session=session)
    persona = session.persona if session.persona_id else None
    tutor_name = persona.name if persona else (
        session.course.default_persona.name if session.course.default_persona_id else "Tutor"
    )
    return render(
        request,
        "sessions/room.html",
        {
            "room": room,
            "session": session,
            "course": session.course,
            "status": status,
            "lines": lines,
            "can_post": can_post,
            "tutor_name": tutor_name,
            "mode_label": _mode_label(status["teaching_mode"]),
            "room_config": {
                "ws_path": routing.room_ws_path(room.pk),
                "last_seq": last_seq,
                "room_id": room.pk,
                "user_id": request.user.pk,
                "can_post": can_post,
                "session_status": session.status,
                "tutor_name": tutor_name,
                "max_chars": int(settings.TUTOR_MAX_MESSAGE_CHARS),
                "modes": dict(TeachingMode.choices),
            },
            "max_chars": int(settings.TUTOR_MAX_MESSAGE_CHARS),
            "export_formats": EXPORT_FORMATS,
        },
    )
