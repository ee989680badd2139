"""Portal URLs of the sessions app, mounted at the site root by tutor_project.urls."""

from django.urls import path

from sessions import views

urlpatterns = [
    path("courses/<int:course_id>/practice/", views.practice_list, name="practice-list"),
    path("courses/<int:course_id>/practice/new/", views.practice_new, name="practice-new"),
    path("courses/<int:course_id>/practice/clear/", views.practice_clear, name="practice-clear"),
    path("courses/<int:course_id>/tutor-status/", views.course_tutor_status, name="course-tutor-status"),
    path("conversations/<int:conversation_id>/", views.conversation_detail, name="conversation-detail"),
    path("conversations/<int:conversation_id>/rename/", views.conversation_rename, name="conversation-rename"),
    path("conversations/<int:conversation_id>/mode/", views.conversation_mode, name="conversation-mode"),
    path("conversations/<int:conversation_id>/delete/", views.conversation_delete, name="conversation-delete"),
]
