"""Sessions API under /api/v1/ (namespace "api")."""

from django.urls import path

from sessions.api import views

urlpatterns = [
    path("sessions/<int:session_id>/monitor/join/", views.MonitorJoinApi.as_view(), name="session-monitor-join"),
    path("rooms/<int:room_id>/join/", views.RoomJoinApi.as_view(), name="room-join"),
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
