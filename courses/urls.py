"""Portal URLs, mounted at the site root by tutor_project.urls."""

from django.urls import path

from courses import views

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("courses/<int:course_id>/", views.course_detail, name="course-detail"),
    path("courses/<int:course_id>/documents/", views.course_documents, name="course-documents"),
    path(
        "courses/<int:course_id>/documents/<int:document_id>/file/",
        views.course_document_file,
        name="course-document-file",
    ),
    path(
        "courses/<int:course_id>/documents/<int:document_id>/delete/",
        views.course_document_delete,
        name="course-document-delete",
    ),
    path("courses/<int:course_id>/documents/search/", views.course_documents_search, name="course-documents-search"),
]
