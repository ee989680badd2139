"""REST API routes of the courses app, mounted under /api/v1/ (namespace "api")."""

from django.urls import path

from courses.api import auth, documents, views

urlpatterns = [
    path("auth/token/", auth.TokenObtainView.as_view(), name="token-obtain"),
    path("auth/token/refresh/", auth.TokenRefreshView.as_view(), name="token-refresh"),
    path("me/", views.MeView.as_view(), name="me"),
    path("courses/", views.CourseListView.as_view(), name="course-list"),
    path("courses/<int:pk>/", views.CourseDetailView.as_view(), name="course-detail"),
    path(
        "courses/<int:course_id>/documents/", documents.CourseDocumentListView.as_view(), name="course-documents"
    ),
    path(
        "courses/<int:course_id>/documents/search/",
        documents.CourseDocumentSearchView.as_view(),
        name="course-documents-search",
    ),
    path("documents/<int:document_id>/", documents.DocumentDetailView.as_view(), name="document-detail"),
]
