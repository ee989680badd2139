"""Sessions API: join tickets for the WebSocket routes, and practice conversations.

Join tickets: how native clients (no cookie, no Origin) get into a WebSocket route.

Each view runs the same selector as the consumer it leads to, so the API cannot hand out a ticket
the socket would refuse, and answers `{ws_url, ticket, expires_in}`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import async_to_sync
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from courses.api.errors import error_responses
from courses.exceptions import DomainError
from courses.selectors import course_get_for_user
from sessions import routing, selectors, services
from sessions.api.serializers import (
    ClearedSerializer,
    ConversationClearSerializer,
    ConversationCreateSerializer,
    ConversationSerializer,
    ConversationUpdateSerializer,
    JoinTicketOutputSerializer,
    MessageExchangeSerializer,
    MessagePostSerializer,
    MessageSerializer,
    RealtimeErrorSerializer,
)
from sessions.models import Conversation, Message
from sessions.realtime import encode, envelope
from sessions.selectors import TUTOR_UNAVAILABLE_MESSAGE
from sessions.tickets import ticket_issue, ticket_ttl_seconds
from sessions.tutor import turn

JOIN_RESPONSES = {
    200: JoinTicketOutputSerializer,
    401: RealtimeErrorSerializer,
    403: RealtimeErrorSerializer,
    404: RealtimeErrorSerializer,
}


def ws_url(request: Request, path: str) -> str:
    """The absolute WebSocket URL of `path` as this request reached us (http->ws, https->wss)."""
    url = request.build_absolute_uri(path)
    return "wss" + url[len("https"):] if url.startswith("https:") else "ws" + url[len("http"):]


def join_response(request: Request, *, kind: str, object_id: int, path: str) -> Response:
    ticket = ticket_issue(user_id=request.user.pk, kind=kind, object_id=object_id)
    data = {"ws_url": ws_url(request, path), "ticket": ticket, "expires_in": ticket_ttl_seconds()}
    return Response(JoinTicketOutputSerializer(data).data)


class MonitorJoinApi(APIView):
    @extend_schema(
        operation_id="sessions_monitor_join",
        summary="A ticket for the session's monitor WebSocket (its professor, staff of the tenant)",
        request=None,
        responses=JOIN_RESPONSES,
        tags=["realtime"],
    )
    def post(self, request: Request, session_id: int) -> Response:
        session = selectors.session_get_for_monitor(user=request.user, session_id=session_id)
        return join_response(
            request, kind="monitor", object_id=session.id, path=routing.monitor_ws_path(session.id)
        )


class LectureJoinApi(APIView):
    @extend_schema(
        operation_id="sessions_lecture_join",
        summary="A ticket for the session's lecture WebSocket (the professor's microphone)",
        request=None,
        responses=JOIN_RESPONSES,
        tags=["realtime"],
    )
    def post(self, request: Request, session_id: int) -> Response:
        session = selectors.session_get_for_lecturer(user=request.user, session_id=session_id)
        return join_response(
            request, kind="lecture", object_id=session.id, path=routing.lecture_ws_path(session.id)
        )


class RoomJoinApi(APIView):
    @extend_schema(
        operation_id="rooms_join",
        summary="A ticket for a breakout room's WebSocket (assigned students, the professor)",
        request=None,
        responses=JOIN_RESPONSES,
        tags=["realtime"],
    )
    def post(self, request: Request, room_id: int) -> Response:
        room = selectors.room_get_for_participant(user=request.user, room_id=room_id)
        return join_response(request, kind="room", object_id=room.id, path=routing.room_ws_path(room.id))


class TenantJoinApi(APIView):
    @extend_schema(
        operation_id="tenant_join",
        summary="A ticket for the tenant's announcement WebSocket",
        request=None,
        responses=JOIN_RESPONSES,
        tags=["realtime"],
    )
    def post(self, request: Request) -> Response:
        tenant = selectors.tenant_get_for_member(user=request.user)
        return join_response(request, kind="tenant", object_id=tenant.id, path=routing.tenant_ws_path())


# --- Practice conversations ---------------------------------------------------------------------


def _own_conversation(request: Request, conversation_id: int) -> Conversation:
    return selectors.conversation_get_for_student(user=request.user, conversation_id=conversation_id)


@extend_schema_view(
    get=extend_schema(
        operation_id="conversations_list",
        summary="The caller's practice conversations (filter with ?course= and ?mode=)",
        parameters=[
            OpenApiParameter("course", int, description="Only this course's conversations."),
            OpenApiParameter("mode", str, description="socratic, teacher or qa."),
        ],
        responses={200: ConversationSerializer(many=True), **error_responses(400, 401, 403)},
        tags=["conversations"],
    ),
    post=extend_schema(
        operation_id="conversations_create",
        summary="Start a practice conversation with the course's tutor (an empty one is reused)",
        request=ConversationCreateSerializer,
        responses={201: ConversationSerializer, **error_responses(400, 401, 403, 404)},
        tags=["conversations"],
    ),
)
class ConversationListApi(generics.ListAPIView):
    serializer_class = ConversationSerializer

    def get_queryset(self) -> QuerySet[Conversation]:
        student = selectors.student_for_user(user=self.request.user)
        course = self.request.query_params.get("course")
        mode = self.request.query_params.get("mode") or None
        if course is not None and not course.isdigit():
            raise DomainError("`course` is a course id.", code="invalid", fields={"course": ["A number."]})
        if mode is not None:
            services.practice_mode_clean(mode)
        return selectors.conversation_list_for_student(
            student=student, course_id=int(course) if course else None, mode=mode
        )

    def post(self, request: Request) -> Response:
        student = selectors.student_for_user(user=request.user)
        payload = ConversationCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        course = course_get_for_user(user=request.user, course_id=payload.validated_data["course"])
        conversation, created = services.conversation_create(
            student=student,
            course=course,
            mode=payload.validated_data.get("mode"),
            title=payload.validated_data.get("title", ""),
            reuse_empty=payload.validated_data["reuse_empty"],
        )
        data = ConversationSerializer(conversation, context={"reused": not created}).data
        return Response(data, status=status.HTTP_201_CREATED)


@extend_schema_view(
    get=extend_schema(
        operation_id="conversations_retrieve", summary="One of the caller's conversations",
        responses={200: ConversationSerializer, **error_responses(401, 403, 404)}, tags=["conversations"],
    ),
    patch=extend_schema(
        operation_id="conversations_update", summary="Rename a conversation or switch its mode",
        request=ConversationUpdateSerializer,
        responses={200: ConversationSerializer, **error_responses(400, 401, 403, 404)}, tags=["conversations"],
    ),
    delete=extend_schema(
        operation_id="conversations_delete", summary="Delete a conversation and its messages",
        responses={204: None, **error_responses(401, 403, 404)}, tags=["conversations"],
    ),
)
class ConversationDetailApi(APIView):
    def get(self, request: Request, conversation_id: int) -> Response:
        return Response(ConversationSerializer(_own_conversation(request, conversation_id)).data)

    def patch(self, request: Request, conversation_id: int) -> Response:
        conversation = _own_conversation(request, conversation_id)
        payload = ConversationUpdateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        conversation = services.conversation_update(
            conversation=conversation,
            title=payload.validated_data.get("title"),
            mode=payload.validated_data.get("mode"),
        )
        return Response(ConversationSerializer(conversation).data)

    def delete(self, request: Request, conversation_id: int) -> Response:
        services.conversation_delete(conversation=_own_conversation(request, conversation_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ConversationClearApi(APIView):
    @extend_schema(
        operation_id="conversations_clear",
        summary="Delete the caller's conversations of a course, of one mode or all",
        request=ConversationClearSerializer,
        responses={200: ClearedSerializer, **error_responses(400, 401, 403, 404)},
        tags=["conversations"],
    )
    def post(self, request: Request) -> Response:
        student = selectors.student_for_user(user=request.user)
        payload = ConversationClearSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        course = course_get_for_user(user=request.user, course_id=payload.validated_data["course"])
        deleted = services.conversations_clear(student=student, course=course, mode=payload.validated_data["mode"])
        return Response({"deleted": deleted})


class ConversationJoinApi(APIView):
    @extend_schema(
        operation_id="conversations_join",
        summary="A ticket for the conversation's WebSocket (its student only)",
        request=None,
        responses=JOIN_RESPONSES,
        tags=["realtime"],
    )
    def post(self, request: Request, conversation_id: int) -> Response:
        conversation = _own_conversation(request, conversation_id)
        return join_response(
            request, kind="conversation", object_id=conversation.pk,
            path=routing.conversation_ws_path(conversation.pk),
        )


def _sse_frame(event_type: str, data: Any, seq: int | None) -> bytes:
    """One server-sent event carrying the same envelope as the WebSocket."""
    body = encode(envelope(event_type, data, seq=seq))
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}event: {event_type}\ndata: {body}\n\n".encode()


async def _sse_turn(question: dict[str, Any], plan: turn.TurnPlan) -> AsyncIterator[bytes]:
    """The question, then the reply's events as they happen, ending with `tutor.message`.

    A client that drops the stream does not stop the reply: it is kept and readable from
    GET .../messages/ (stop is explicit: POST .../interrupt/, or `tutor.interrupt` on a socket).
    """
    queue: asyncio.Queue[tuple[str, Any, int | None]] = asyncio.Queue()
    yield _sse_frame(question["event_type"], question["data"], question["seq"])
    task = await turn.turn_start(plan, listener=lambda *event: queue.put_nowait(event))
    while True:
        getter = asyncio.ensure_future(queue.get())
        await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
        if not getter.done():  # the turn ended without a final event (it crashed hard)
            getter.cancel()
            if queue.empty():
                yield _sse_frame("error", {"code": "tutor_unavailable", "message": TUTOR_UNAVAILABLE_MESSAGE}, None)
                return
            continue
        event_type, data, seq = getter.result()
        yield _sse_frame(event_type, data, seq)
        if event_type == "tutor.message":
            return


async def _turn_to_end(plan: turn.TurnPlan) -> Message:
    task = await turn.turn_start(plan)
    return await task


class ConversationMessagesApi(generics.ListAPIView):
    serializer_class = MessageSerializer

    def perform_content_negotiation(self, request, force=False):
        # `Accept: text/event-stream` selects the streamed answer below; errors stay JSON.
        return (JSONRenderer(), JSONRenderer.media_type)

    @extend_schema(
        operation_id="conversations_messages_list",
        summary="The conversation's messages, oldest first (replies still streaming are left out)",
        responses={200: MessageSerializer(many=True), **error_responses(401, 403, 404)},
        tags=["conversations"],
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[Message]:
        conversation = _own_conversation(self.request, self.kwargs["conversation_id"])
        return selectors.conversation_messages(conversation=conversation)

    @extend_schema(
        operation_id="conversations_messages_create",
        summary="Ask the tutor. With `Accept: text/event-stream` the reply streams as server-sent "
        "events (transcript.final, tutor.thinking, tutor.delta..., tutor.message); otherwise the "
        "answer comes when the reply is finished",
        request=MessagePostSerializer,
        responses={
            200: OpenApiResponse(description="text/event-stream: events in the WebSocket envelope."),
            201: MessageExchangeSerializer,
            **error_responses(400, 401, 403, 404, 429),
        },
        tags=["conversations"],
    )
    def post(self, request: Request, conversation_id: int) -> Response | StreamingHttpResponse:
        conversation = _own_conversation(request, conversation_id)
        payload = MessagePostSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        question, plan = turn.turn_begin(
            conversation_id=conversation.pk, user=request.user, text=payload.validated_data["text"]
        )
        if "text/event-stream" in request.headers.get("Accept", ""):
            response = StreamingHttpResponse(_sse_turn(question, plan), content_type="text/event-stream")
            response["Cache-Control"] = "no-cache"
            response["X-Accel-Buffering"] = "no"  # nginx: pass events through as they come
            return response
        reply = async_to_sync(_turn_to_end)(plan)
        message = Message.objects.select_related("author").get(pk=plan.question_id)
        return Response(
            {"message": MessageSerializer(message).data, "reply": MessageSerializer(reply).data},
            status=status.HTTP_201_CREATED,
        )


class ConversationInterruptApi(APIView):
    @extend_schema(
        operation_id="conversations_interrupt",
        summary="Stop the tutor's reply now; what it said so far is kept as `interrupted`",
        request=None,
        responses={202: None, **error_responses(401, 403, 404)},
        tags=["conversations"],
    )
    def post(self, request: Request, conversation_id: int) -> Response:
        conversation = _own_conversation(request, conversation_id)
        async_to_sync(turn.turn_cancel_everywhere)(conversation.pk)
        return Response(status=status.HTTP_202_ACCEPTED)
