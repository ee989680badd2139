"""Sessions API under /api/v1/ (namespace "api")."""

from django.urls import path

from sessions.api import live, views

urlpatterns = [
    path("sessions/", live.SessionListApi.as_view(), name="session-list"),
    path("sessions/<int:session_id>/", live.SessionDetailApi.as_view(), name="session-detail"),
    path("sessions/<int:session_id>/start/", live.SessionStartApi.as_view(), name="session-start"),
    path("sessions/<int:session_id>/end/", live.SessionEndApi.as_view(), name="session-end"),
    path("sessions/<int:session_id>/assignments/", live.SessionAssignmentsApi.as_view(), name="session-assign"),
    path("sessions/<int:session_id>/broadcast/", live.SessionBroadcastApi.as_view(), name="session-broadcast"),
    path("sessions/<int:session_id>/mode/", live.SessionModeApi.as_view(), name="session-mode"),
    path("sessions/<int:session_id>/hint/", live.SessionHintApi.as_view(), name="session-hint"),
    path("sessions/<int:session_id>/clarify/", live.SessionClarifyApi.as_view(), name="session-clarify"),
    path(
        "sessions/<int:session_id>/transcript/<str:fmt>/",
        live.SessionTranscriptExportApi.as_view(),
        name="session-transcript-export",
    ),
    path("rooms/<int:room_id>/", live.RoomDetailApi.as_view(), name="room-detail"),
    path("rooms/<int:room_id>/transcript/", live.RoomTranscriptApi.as_view(), name="room-transcript"),
    path(
        "rooms/<int:room_id>/transcript/<str:fmt>/",
        live.RoomTranscriptExportApi.as_view(),
        name="room-transcript-export",
    ),
    path("sessions/<int:session_id>/monitor/join/", views.MonitorJoinApi.as_view(), name="session-monitor-join"),
    path("rooms/<int:room_id>/join/", views.RoomJoinApi.as_view(), name="room-join"),
    path("sessions/<int:session_id>/lecture/join/", views.LectureJoinApi.as_view(), name="session-lecture-join"),
    path("tenant/join/", views.TenantJoinApi.as_view(), name="tenant-join"),
    path("conversations/", views.ConversationListApi.as_view(), name="conversation-list"),
    path("conversations/clear/", views.ConversationClearApi.as_view(), name="conversation-clear"),
    path("conversations/<int:conversation_id>/", views.ConversationDetailApi.as_view(), name="conversation-detail"),
    path("conversations/<int:conversation_id>/join/", views.ConversationJoinApi.as_view(), name="conversation-join"),
    path(
        "conversations/<int:conversation_id>/messages/",
        views.ConversationMessagesApi.as_view(),
        name="conversation-messages",
    ),
    path(
        "conversations/<int:conversation_id>/interrupt/",
        views.ConversationInterruptApi.as_view(),
        name="conversation-interrupt",
    ),
]
