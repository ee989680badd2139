"""WebSocket routes of the sessions app, and the paths the join-ticket API hands out."""

from __future__ import annotations

from django.urls import path

from sessions import consumers

websocket_urlpatterns = [
    path("ws/sessions/<int:session_id>/monitor/", consumers.MonitorConsumer.as_asgi()),
    path("ws/rooms/<int:room_id>/", consumers.RoomConsumer.as_asgi()),
    path("ws/tenant/", consumers.TenantConsumer.as_asgi()),
    path("ws/conversations/<int:conversation_id>/", consumers.ConversationConsumer.as_asgi()),
    path("ws/sessions/<int:session_id>/lecture/", consumers.LectureConsumer.as_asgi()),
]


def monitor_ws_path(session_id: int) -> str:
    return f"/ws/sessions/{int(session_id)}/monitor/"


def room_ws_path(room_id: int) -> str:
    return f"/ws/rooms/{int(room_id)}/"


def tenant_ws_path() -> str:
    return "/ws/tenant/"


def conversation_ws_path(conversation_id: int) -> str:
    return f"/ws/conversations/{int(conversation_id)}/"


def lecture_ws_path(session_id: int) -> str:
    return f"/ws/sessions/{int(session_id)}/lecture/"
