"""Analytics API under /api/v1/ (namespace "api")."""

from django.urls import path

from analytics.api import views

urlpatterns = [
    path("sessions/<int:session_id>/analytics/", views.SessionAnalyticsApi.as_view(), name="analytics-session"),
    path(
        "sessions/<int:session_id>/analytics/students/<int:student_id>/",
        views.StudentAnalyticsApi.as_view(),
        name="analytics-student",
    ),
    path(
        "sessions/<int:session_id>/analytics/recompute/",
        views.SessionAnalyticsRecomputeApi.as_view(),
        name="analytics-recompute",
    ),
    path(
        "sessions/<int:session_id>/analytics/export.<str:fmt>",
        views.SessionAnalyticsExportApi.as_view(),
        name="analytics-export",
    ),
    path("students/<int:student_id>/progress/", views.StudentProgressApi.as_view(), name="student-progress"),
]
