"""Join tickets: how native clients (no cookie, no Origin) get into a WebSocket route.

Each view runs the same selector as the consumer it leads to, so the API cannot hand out a ticket
the socket would refuse, and answers `{ws_url, ticket, expires_in}`.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from sessions import routing, selectors
from sessions.api.serializers import JoinTicketOutputSerializer, RealtimeErrorSerializer
from sessions.tickets import ticket_issue, ticket_ttl_seconds

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
