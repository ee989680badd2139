"""Portal URLs of the sessions app, mounted at the site root by tutor_project.urls."""

from django.urls import path

from sessions import views, views_live

urlpatterns = [
    path("courses/<int:course_id>/practice/", views.practice_list, name="practice-list"),
    path("courses/<int:course_id>/practice/new/", views.practice_new, name="practice-new"),
    path("courses/<int:course_id>/practice/clear/", views.practice_clear, name="practice-clear"),
    path("courses/<int:course_id>/tutor-status/", views.course_tutor_status, name="course-tutor-status"),
    path("conversations/<int:conversation_id>/", views.conversation_detail, name="conversation-detail"),
    path("conversations/<int:conversation_id>/rename/", views.conversation_rename, name="conversation-rename"),
    path("conversations/<int:conversation_id>/mode/", views.conversation_mode, name="conversation-mode"),
    path("conversations/<int:conversation_id>/delete/", views.conversation_delete, name="conversation-delete"),
    # Live sessions (sessions/views_live.py)
    path("courses/<int:course_id>/sessions/new/", views_live.session_new, name="session-new"),
    path("sessions/<int:session_id>/", views_live.session_detail, name="session-detail"),
    path("sessions/<int:session_id>/start/", views_live.session_start, name="session-start"),
    path("sessions/<int:session_id>/end/", views_live.session_end, name="session-end"),
    path("sessions/<int:session_id>/move/", views_live.session_move, name="session-move"),
    path("sessions/<int:session_id>/rooms/<int:room_id>/edit/", views_live.session_room_edit, name="session-room-edit"),
    path("sessions/<int:session_id>/monitor/", views_live.session_monitor, name="session-monitor"),
    path("sessions/<int:session_id>/broadcast/", views_live.session_broadcast, name="session-broadcast"),
    path("sessions/<int:session_id>/mode/", views_live.session_mode, name="session-mode"),
    path("sessions/<int:session_id>/hint/", views_live.session_hint, name="session-hint"),
    path("sessions/<int:session_id>/clarify/", views_live.session_clarify, name="session-clarify"),
    path("rooms/<int:room_id>/", views_live.room_detail, name="room-detail"),
    # Transcript exports: .vtt, .csv, .json (sessions/exports.py)
    path("sessions/<int:session_id>/transcript.<str:fmt>", views.session_transcript_export, name="session-transcript-export"),
    path("rooms/<int:room_id>/transcript.<str:fmt>", views.room_transcript_export, name="room-transcript-export"),
]
