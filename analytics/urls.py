"""Portal URLs of the analytics app, mounted at the site root by tutor_project.urls."""

from django.urls import path

from analytics import views

urlpatterns = [
    path(
        "sessions/<int:session_id>/analytics.<str:fmt>",
        views.session_analytics_export,
        name="session-analytics-export",
    ),
]
