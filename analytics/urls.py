"""Portal URLs of the analytics app, mounted at the site root by tutor_project.urls."""

from django.urls import path

from analytics import views

urlpatterns = [
    # Reports (analytics/views.py, data in analytics/reports.py)
    path("sessions/<int:session_id>/report/", views.session_report, name="session-report"),
    path("sessions/<int:session_id>/report/print/", views.session_report_print, name="session-report-print"),
    path("sessions/<int:session_id>/report/status/", views.session_report_status, name="session-report-status"),
    path("sessions/<int:session_id>/report/lines/", views.session_report_lines, name="session-report-lines"),
    path(
        "sessions/<int:session_id>/report/students/<int:student_id>/",
        views.session_report_student,
        name="session-report-student",
    ),
    path("courses/<int:course_id>/students/<int:student_id>/report/", views.student_report, name="student-report"),
    path("courses/<int:course_id>/analytics/", views.course_analytics, name="course-analytics"),
    # Exports: the API's files (analytics/exports.py)
    path(
        "sessions/<int:session_id>/analytics.<str:fmt>",
        views.session_analytics_export,
        name="session-analytics-export",
    ),
]
