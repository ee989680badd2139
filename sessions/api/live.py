"""Live sessions API: build a session, start and end it, place students, steer the rooms, and
read or export transcripts. Access rules are the selectors the consumers use; writes are the
services of sessions/orchestration.py and sessions/live.py; errors are the API's one JSON shape.
"""

from __future__ import annotations

from django.db.models import Q
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from courses.api.errors import error_responses
from courses.api.serializers import StrictCharField
from courses.exceptions import DomainError, Forbidden, NotFound
from courses.models import Professor, User
from courses.selectors import course_get_for_user
from sessions import exports, live, orchestration, selectors
from sessions.models import AvatarPersona, BreakoutRoom, LiveSession, TranscriptSegment

MODE_CHOICES = [(mode.value, mode.label) for mode in orchestration.SESSION_MODES]


# --- shapes -------------------------------------------------------------------------------------


class RoomStudentSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class RoomSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    number = serializers.IntegerField()
    topic = serializers.CharField()
    goal = serializers.CharField()
    status = serializers.CharField()
    teaching_mode = serializers.CharField()
    tutor_status = serializers.CharField()
    tutor_error = serializers.CharField()
    last_activity_at = serializers.DateTimeField(allow_null=True)
    students = RoomStudentSerializer(many=True)


class SessionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    course = serializers.IntegerField(source="course_id")
    title = serializers.CharField()
    status = serializers.CharField()
    teaching_mode = serializers.CharField()
    persona = serializers.IntegerField(source="persona_id", allow_null=True)
    room_count = serializers.IntegerField()
    students_per_room = serializers.IntegerField(allow_null=True)
    assignment_strategy = serializers.CharField()
    hint = serializers.CharField(source="tutor_hint")
    degraded = serializers.JSONField()
    last_seq = serializers.IntegerField()
    started_at = serializers.DateTimeField(allow_null=True)
    ended_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()


class SessionDetailSerializer(SessionSerializer):
    rooms = serializers.SerializerMethodField()
    my_room = serializers.SerializerMethodField()

    def get_rooms(self, session: LiveSession) -> list[dict]:
        if not self.context.get("with_rooms", True):
            return []
        return RoomSerializer(selectors.session_status_for_monitor(session=session)["rooms"], many=True).data

    def get_my_room(self, session: LiveSession) -> int | None:
        room = self.context.get("my_rooms", {}).get(session.pk)
        return room.pk if room else None


class SessionCreateSerializer(serializers.Serializer):
    course = serializers.IntegerField(min_value=1)
    title = StrictCharField(max_length=orchestration.TITLE_MAX_CHARS)
    room_count = serializers.IntegerField(min_value=1, max_value=orchestration.MAX_ROOMS, required=False)
    students_per_room = serializers.IntegerField(min_value=1, max_value=orchestration.MAX_ROOMS, required=False)
    teaching_mode = serializers.ChoiceField(choices=MODE_CHOICES, required=False)
    persona = serializers.IntegerField(min_value=1, required=False, allow_null=True)
    assignment_strategy = serializers.ChoiceField(choices=LiveSession.Assignment.choices, required=False)
    topics = serializers.ListField(
        child=StrictCharField(max_length=orchestration.TOPIC_MAX_CHARS, allow_blank=True),
        required=False, max_length=orchestration.MAX_ROOMS,
    )


class SessionUpdateSerializer(serializers.Serializer):
    title = StrictCharField(max_length=orchestration.TITLE_MAX_CHARS, required=False)
    teaching_mode = serializers.ChoiceField(choices=MODE_CHOICES, required=False)
    persona = serializers.IntegerField(min_value=1, required=False, allow_null=True)


class RoomUpdateSerializer(serializers.Serializer):
    name = StrictCharField(max_length=100, required=False)
    topic = StrictCharField(max_length=orchestration.TOPIC_MAX_CHARS, required=False, allow_blank=True)
    goal = StrictCharField(max_length=orchestration.GOAL_MAX_CHARS, required=False, allow_blank=True)
    teaching_mode = serializers.ChoiceField(choices=[("", "Session's"), *MODE_CHOICES], required=False, allow_blank=True)


class AssignmentSerializer(serializers.Serializer):
    student = serializers.IntegerField(min_value=1)
    room = serializers.IntegerField(min_value=1, allow_null=True, help_text="null: out of every room.")


class BroadcastSerializer(serializers.Serializer):
    text = serializers.JSONField()
    room = serializers.JSONField(required=False, default="all", help_text='A room id, or "all".')


class ModeSerializer(serializers.Serializer):
    mode = serializers.ChoiceField(choices=MODE_CHOICES)
    room = serializers.JSONField(required=False, default="all", help_text='A room id, or "all".')


class HintSerializer(serializers.Serializer):
    text = serializers.CharField(allow_blank=True, max_length=live.HINT_MAX_CHARS, trim_whitespace=True)


class StartSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    started_now = serializers.BooleanField()
    rooms = serializers.JSONField()
    degraded = serializers.JSONField()
    counts = serializers.JSONField()


class SegmentSerializer(serializers.ModelSerializer):
    speaker = serializers.SerializerMethodField()
    event = serializers.SerializerMethodField()

    class Meta:
        model = TranscriptSegment
        fields = ["id", "seq", "room", "speaker", "text", "source", "is_final", "start_ms", "end_ms", "provider", "event", "created_at"]
        read_only_fields = fields

    def get_speaker(self, segment: TranscriptSegment) -> dict:
        return {"id": segment.speaker_user_id, "name": segment.speaker_name, "kind": segment.speaker_kind}

    def get_event(self, segment: TranscriptSegment) -> dict:
        """The segment as its WebSocket event ({type, data}): tutor lines carry citations and model."""
        event = live.segment_event(segment)
        return {"type": event["event_type"], "data": event["data"]}


# --- helpers ----------------------------------------------------------------------------------


def _professor_of(user: User) -> Professor:
    professor = Professor.objects.filter(user_id=user.pk).first() if user.is_authenticated else None
    if professor is None:
        raise Forbidden("Only professors create and run live sessions.")
    return professor


def _persona(user: User, persona_id: int | None) -> AvatarPersona | None:
    if persona_id is None:
        return None
    persona = (
        AvatarPersona.objects.filter(pk=persona_id, is_active=True)
        .filter(Q(tenant_id=user.tenant_id) | Q(tenant__isnull=True))
        .first()
    )
    if persona is None:
        raise DomainError("No such persona.", code="invalid", fields={"persona": ["Unknown persona."]})
    return persona


def _session(request: Request, session_id: int) -> LiveSession:
    return selectors.session_get_for_professor(user=request.user, session_id=session_id)


def _room_for_professor(request: Request, room_id: int) -> BreakoutRoom:
    room = selectors.room_get_for_participant(user=request.user, room_id=room_id)
    if not selectors.user_can_monitor(user=request.user, session=room.session):
        raise Forbidden("Only the session's professor can change its rooms.")
    return room


def _detail(session: LiveSession, request: Request) -> dict:
    return SessionDetailSerializer(session, context={"request": request}).data


TAGS = ["live sessions"]


# --- sessions ----------------------------------------------------------------------------------


@extend_schema_view(
    get=extend_schema(
        operation_id="sessions_list",
        summary="Sessions you can see (?course=, ?status=); a student's carry `my_room`",
        parameters=[OpenApiParameter("course", int), OpenApiParameter("status", str)],
        responses={200: SessionDetailSerializer(many=True), **error_responses(400, 401)}, tags=TAGS,
    ),
    post=extend_schema(
        operation_id="sessions_create",
        summary="Create a draft session: rooms, and students placed by the strategy (professor)",
        request=SessionCreateSerializer,
        responses={201: SessionDetailSerializer, **error_responses(400, 401, 403, 404)}, tags=TAGS,
    ),
)
class SessionListApi(generics.ListAPIView):
    serializer_class = SessionDetailSerializer

    def get_queryset(self):
        rows = selectors.sessions_visible_to(user=self.request.user)
        course = self.request.query_params.get("course")
        wanted = self.request.query_params.get("status")
        if course is not None:
            if not course.isdigit():
                raise DomainError("`course` is a course id.", code="invalid", fields={"course": ["A number."]})
            rows = rows.filter(course_id=int(course))
        if wanted:
            if wanted not in LiveSession.Status.values:
                raise DomainError("`status` is draft, live or ended.", code="invalid", fields={"status": ["Invalid."]})
            rows = rows.filter(status=wanted)
        return rows.order_by("-created_at")

    def get_serializer_context(self):
        context = super().get_serializer_context()
        context["with_rooms"] = False
        if self.request.user.is_authenticated and self.request.user.role == User.Role.STUDENT:
            page_ids = list(self.get_queryset().values_list("pk", flat=True)[:200])
            context["my_rooms"] = selectors.student_rooms(user=self.request.user, session_ids=page_ids)
        return context

    def post(self, request: Request) -> Response:
        professor = _professor_of(request.user)
        payload = SessionCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        course = course_get_for_user(user=request.user, course_id=data["course"])
        if not course.professors.filter(pk=professor.pk).exists():
            raise Forbidden("Only a professor of the course can create its sessions.")
        session = orchestration.session_create(
            course=course, professor=professor, title=data["title"],
            room_count=data.get("room_count"), students_per_room=data.get("students_per_room"),
            teaching_mode=data.get("teaching_mode"), persona=_persona(request.user, data.get("persona")),
            assignment_strategy=data.get("assignment_strategy", LiveSession.Assignment.ROUND_ROBIN),
            topics=data.get("topics", []), by=request.user,
        )
        return Response(_detail(session, request), status=status.HTTP_201_CREATED)


@extend_schema_view(
    get=extend_schema(operation_id="sessions_retrieve", summary="A session with its rooms and students",
                      responses={200: SessionDetailSerializer, **error_responses(401, 403, 404)}, tags=TAGS),
    patch=extend_schema(operation_id="sessions_update", summary="Title, teaching mode or persona",
                        request=SessionUpdateSerializer,
                        responses={200: SessionDetailSerializer, **error_responses(400, 401, 403, 404, 409)}, tags=TAGS),
    delete=extend_schema(operation_id="sessions_delete", summary="Delete a draft session",
                         responses={204: None, **error_responses(401, 403, 404, 409)}, tags=TAGS),
)
class SessionDetailApi(APIView):
    def get(self, request: Request, session_id: int) -> Response:
        return Response(_detail(_session(request, session_id), request))

    def patch(self, request: Request, session_id: int) -> Response:
        session = _session(request, session_id)
        payload = SessionUpdateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        changes = dict(payload.validated_data)
        if "persona" in changes:
            changes["persona"] = _persona(request.user, changes["persona"])
        orchestration.session_update(session=session, **changes)
        return Response(_detail(session, request))

    def delete(self, request: Request, session_id: int) -> Response:
        session = _session(request, session_id)
        if session.status != LiveSession.Status.DRAFT:
            raise DomainError("Only a draft session can be deleted; end it instead.", code="conflict")
        session.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class SessionStartApi(APIView):
    @extend_schema(
        operation_id="sessions_start",
        summary="Start: rooms and assignments written, room tutors started (soft failures in `degraded`)",
        request=None, responses={200: StartSerializer, **error_responses(401, 403, 404, 409)}, tags=TAGS,
    )
    def post(self, request: Request, session_id: int) -> Response:
        result = orchestration.session_start(session=_session(request, session_id), by=request.user)
        return Response(StartSerializer(result.as_dict()).data)


class SessionEndApi(APIView):
    @extend_schema(
        operation_id="sessions_end", summary="End: tutors stopped, sockets closed, analytics queued",
        request=None, responses={200: SessionSerializer, **error_responses(401, 403, 404)}, tags=TAGS,
    )
    def post(self, request: Request, session_id: int) -> Response:
        session = orchestration.session_end(session=_session(request, session_id), by=request.user)
        return Response(SessionSerializer(session).data)


class SessionAssignmentsApi(APIView):
    @extend_schema(
        operation_id="sessions_assign",
        summary="Place a student in a room (or null: out of every room); a live move switches their socket",
        request=AssignmentSerializer, responses={200: SessionDetailSerializer, **error_responses(400, 401, 403, 404, 409)},
        tags=TAGS,
    )
    def post(self, request: Request, session_id: int) -> Response:
        session = _session(request, session_id)
        payload = AssignmentSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        orchestration.assignment_move_by_ids(
            session=session, student_id=payload.validated_data["student"],
            room_id=payload.validated_data["room"], by=request.user,
        )
        return Response(_detail(session, request))


class SessionBroadcastApi(APIView):
    @extend_schema(
        operation_id="sessions_broadcast", summary="Send the professor's message to one room or all",
        request=BroadcastSerializer, responses={201: SegmentSerializer(many=True), **error_responses(400, 401, 403, 404, 409)},
        tags=TAGS,
    )
    def post(self, request: Request, session_id: int) -> Response:
        session = _session(request, session_id)
        payload = BroadcastSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        segments = live.room_broadcast(
            session=session, by=request.user, text=payload.validated_data["text"],
            room_id=payload.validated_data["room"],
        )
        return Response(SegmentSerializer(segments, many=True).data, status=status.HTTP_201_CREATED)


class SessionModeApi(APIView):
    @extend_schema(
        operation_id="sessions_mode", summary="Switch one room's or every room's tutor to a teaching mode",
        request=ModeSerializer, responses={200: SessionDetailSerializer, **error_responses(400, 401, 403, 404, 409)},
        tags=TAGS,
    )
    def post(self, request: Request, session_id: int) -> Response:
        session = _session(request, session_id)
        payload = ModeSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        live.session_mode_switch(
            session=session, mode=payload.validated_data["mode"], room_id=payload.validated_data["room"]
        )
        session.refresh_from_db()
        return Response(_detail(session, request))


class SessionHintApi(APIView):
    @extend_schema(
        operation_id="sessions_hint", summary="Push a hint into every room tutor's context (empty: remove it)",
        request=HintSerializer, responses={200: SessionSerializer, **error_responses(400, 401, 403, 404, 409)},
        tags=TAGS,
    )
    def post(self, request: Request, session_id: int) -> Response:
        session = _session(request, session_id)
        payload = HintSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        live.session_hint_set(session=session, text=payload.validated_data["text"])
        return Response(SessionSerializer(session).data)


class ClarifySerializer(serializers.Serializer):
    topic = StrictCharField(max_length=live.CLARIFY_TOPIC_MAX_CHARS, help_text="A topic of the confusion radar.")
    text = StrictCharField(
        max_length=live.CLARIFY_TEXT_MAX_CHARS, required=False, allow_blank=True, default="",
        help_text="The professor's words to the rooms (and the tutors); empty: a default naming the topic.",
    )


class ClarifyResultSerializer(serializers.Serializer):
    topic = serializers.CharField()
    text = serializers.CharField(help_text="What the rooms were told.")
    hint = serializers.CharField(help_text="The session's tutor hint now.")
    seqs = serializers.ListField(child=serializers.IntegerField(), help_text="The broadcast's segments, one per room.")


class SessionClarifyApi(APIView):
    @extend_schema(
        operation_id="sessions_clarify",
        summary="Clarify for everyone: every tutor clarifies the topic at its next turn, every room is told",
        request=ClarifySerializer, responses={200: ClarifyResultSerializer, **error_responses(400, 401, 403, 404, 409)},
        tags=TAGS,
    )
    def post(self, request: Request, session_id: int) -> Response:
        session = _session(request, session_id)
        payload = ClarifySerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        result = live.session_clarify(
            session=session, by=request.user, topic=payload.validated_data["topic"],
            text=payload.validated_data["text"],
        )
        return Response(ClarifyResultSerializer(result).data)


# --- rooms -------------------------------------------------------------------------------------


class RoomDetailApi(APIView):
    @extend_schema(operation_id="rooms_retrieve", summary="A room (its students, its professor)",
                   responses={200: RoomSerializer, **error_responses(401, 403, 404)}, tags=TAGS)
    def get(self, request: Request, room_id: int) -> Response:
        room = selectors.room_get_for_participant(user=request.user, room_id=room_id)
        return Response(RoomSerializer(selectors.room_status(room=room)).data)

    @extend_schema(operation_id="rooms_update", summary="Name, topic, goal or the room's own teaching mode",
                   request=RoomUpdateSerializer,
                   responses={200: RoomSerializer, **error_responses(400, 401, 403, 404, 409)}, tags=TAGS)
    def patch(self, request: Request, room_id: int) -> Response:
        room = _room_for_professor(request, room_id)
        payload = RoomUpdateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        orchestration.room_update(room=room, **payload.validated_data)
        return Response(RoomSerializer(selectors.room_status(room=room)).data)


@extend_schema_view(
    get=extend_schema(
        operation_id="rooms_transcript", summary="The room's transcript, in seq order (?after_seq=)",
        parameters=[OpenApiParameter("after_seq", int)],
        responses={200: SegmentSerializer(many=True), **error_responses(400, 401, 403, 404)}, tags=TAGS,
    )
)
class RoomTranscriptApi(generics.ListAPIView):
    serializer_class = SegmentSerializer

    def get_queryset(self):
        room = selectors.room_get_for_participant(user=self.request.user, room_id=self.kwargs["room_id"])
        after = self.request.query_params.get("after_seq", "0")
        if not after.isdigit():
            raise DomainError("`after_seq` is a number.", code="invalid", fields={"after_seq": ["A number."]})
        return selectors.segments_after(session_id=room.session_id, room_id=room.pk, after_seq=int(after))


def export_response(*, session: LiveSession, room: BreakoutRoom | None, fmt: str) -> HttpResponse:
    """A transcript export as a download (shared by the API and the portal)."""
    try:
        body, content_type, filename = exports.transcript_export(session=session, room=room, fmt=fmt)
    except ValueError:
        raise NotFound(f"No export format {fmt[:10]!r}; use vtt, csv or json.") from None
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def export_room(*, user: User, room_id: int, fmt: str) -> HttpResponse:
    room = selectors.room_get_for_participant(user=user, room_id=room_id)
    return export_response(session=room.session, room=room, fmt=fmt)


def export_session(*, user: User, session_id: int, fmt: str) -> HttpResponse:
    session = selectors.session_get_for_professor(user=user, session_id=session_id)
    return export_response(session=session, room=None, fmt=fmt)


FORMAT_PARAMETER = OpenApiParameter("fmt", str, OpenApiParameter.PATH, enum=list(exports.FORMATS), description="vtt, csv or json")


class RoomTranscriptExportApi(APIView):
    @extend_schema(operation_id="rooms_transcript_export", summary="The room's transcript as WebVTT, CSV or JSON",
                   parameters=[FORMAT_PARAMETER], responses={(200, "text/vtt"): str, **error_responses(401, 403, 404)}, tags=TAGS)
    def get(self, request: Request, room_id: int, fmt: str) -> HttpResponse:
        return export_room(user=request.user, room_id=room_id, fmt=fmt)


class SessionTranscriptExportApi(APIView):
    @extend_schema(operation_id="sessions_transcript_export", summary="Every room's transcript as WebVTT, CSV or JSON",
                   parameters=[FORMAT_PARAMETER], responses={(200, "text/vtt"): str, **error_responses(401, 403, 404)}, tags=TAGS)
    def get(self, request: Request, session_id: int, fmt: str) -> HttpResponse:
        return export_session(user=request.user, session_id=session_id, fmt=fmt)
