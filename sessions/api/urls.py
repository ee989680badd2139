"""Sessions API under /api/v1/ (namespace "api")."""

from django.urls import path

from sessions.api import views

urlpatterns = [
    path("sessions/<int:session_id>/monitor/join/", views.MonitorJoinApi.as_view(), name="session-monitor-join"),
    path("rooms/<int:room_id>/join/", views.RoomJoinApi.as_view(), name="room-join"),
    path("tenant/join/", views.TenantJoinApi.as_view(), name="tenant-join"),
]
