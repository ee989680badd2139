"""The documents API: upload (and ingestion after commit), status, list, replace, delete, search;
bad input gets a 4xx in the error shape and loses nothing; everything is tenant- and role-scoped."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
from django.urls import reverse

from courses.models import CourseDocument, DocumentChunk
from tests import factories
from tests.courses.documents_support import docx_bytes, pdf_bytes, pptx_bytes

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_password_hashing")]

NOTES_MD = b"# Notes\n\n## Loops\n\nA for loop stops when the range is exhausted.\n\n## Functions\n\nreturn hands back a value.\n"


@pytest.fixture(autouse=True)
def _in_line(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.DOCUMENT_INGEST_IN_THREAD = False  # the task runs (eagerly) when the upload commits


def upload_url(course) -> str:
    return reverse("api:course-documents", args=[course.pk])


def detail_url(document_id: int) -> str:
    return reverse("api:document-detail", args=[document_id])


def _put_file(client, url: str, name: str, raw: bytes, headers):
    """A multipart PUT (the test client encodes multipart for POST only)."""
    body = encode_multipart(BOUNDARY, {"file": SimpleUploadedFile(name, raw)})
    return client.put(url, body, content_type=MULTIPART_CONTENT, **headers)


def _upload(client, headers, course, name: str, raw: bytes, capture, **extra):
    with capture(execute=True):
        return client.post(upload_url(course), {"file": SimpleUploadedFile(name, raw), **extra}, **headers)


@pytest.mark.parametrize(
    ("name", "raw", "page_count"),
    [
        ("notes.md", NOTES_MD, None),
        ("notes.txt", b"A for loop stops.\fA function returns.", 2),
        ("week1.pdf", pdf_bytes(["Loops\nA for loop stops.", "Functions\nA function returns."]), 2),
        ("handout.docx", docx_bytes(), None),
        ("lecture.pptx", pptx_bytes(), 3),
    ],
)
def test_upload_answers_201_pending_and_the_document_becomes_ready(
    client, api_headers, professor, course, name, raw, page_count, django_capture_on_commit_callbacks
):
    headers = api_headers(professor.user)

    response = _upload(client, headers, course, name, raw, django_capture_on_commit_callbacks)

    assert response.status_code == 201, response.content
    body = response.json()
    assert {"id", "status", "progress"} <= set(body)
    assert (body["status"], body["progress"]) == ("pending", 0)  # as committed; ingestion follows
    status = client.get(detail_url(body["id"]), **headers).json()
    assert (status["status"], status["progress"], status["error"]) == ("ready", 100, "")
    assert status["page_count"] == page_count
    assert status["chunk_count"] > 0
    assert status["file_url"] == reverse("course-document-file", args=[course.pk, body["id"]])
    document = CourseDocument.objects.get(pk=body["id"])
    assert document.uploaded_by == professor.user and document.size_bytes == len(raw)
    assert document.title == name.rsplit(".", 1)[0]


def test_a_title_can_be_given(client, api_headers, professor, course, django_capture_on_commit_callbacks):
    response = _upload(
        client, api_headers(professor.user), course, "n.md", NOTES_MD, django_capture_on_commit_callbacks,
        title="Week 1 notes",
    )

    assert CourseDocument.objects.get(pk=response.json()["id"]).title == "Week 1 notes"


def test_a_corrupt_file_is_accepted_then_fails_with_a_reason(
    client, api_headers, professor, course, django_capture_on_commit_callbacks
):
    headers = api_headers(professor.user)

    response = _upload(client, headers, course, "broken.pdf", b"%PDF-1.4 nonsense", django_capture_on_commit_callbacks)

    assert response.status_code == 201
    status = client.get(detail_url(response.json()["id"]), **headers).json()
    assert status["status"] == "failed" and "could not be read" in status["error"]


# --- Bad input ------------------------------------------------------------------------------------


def test_too_large_is_413(client, api_headers, professor, course, settings, assert_api_error):
    settings.MAX_UPLOAD_BYTES = 100

    response = client.post(
        upload_url(course), {"file": SimpleUploadedFile("big.md", b"x" * 101)}, **api_headers(professor.user)
    )

    error = assert_api_error(response, 413, "file_too_large")
    assert "limit" in error["message"]
    assert not CourseDocument.objects.exists()


def test_a_body_announced_far_too_large_is_refused_before_it_is_read(
    client, api_headers, professor, course, settings, assert_api_error
):
    settings.MAX_UPLOAD_BYTES = 100

    response = client.post(
        upload_url(course),
        {"file": SimpleUploadedFile("big.md", b"x" * 200_000)},
        **api_headers(professor.user),
    )

    assert_api_error(response, 413, "file_too_large")


@pytest.mark.parametrize("name", ["photo.png", "slides.ppt", "notes", "archive.zip", "page.html"])
def test_a_type_we_cannot_read_is_415(client, api_headers, professor, course, name, assert_api_error):
    response = client.post(
        upload_url(course), {"file": SimpleUploadedFile(name, b"data")}, **api_headers(professor.user)
    )

    error = assert_api_error(response, 415, "unsupported_file_type")
    assert ".pdf" in error["message"]
    assert not CourseDocument.objects.exists()


def test_no_file_or_an_empty_one_is_400(client, api_headers, professor, course, assert_api_error):
    headers = api_headers(professor.user)

    error = assert_api_error(client.post(upload_url(course), {"title": "x"}, **headers), 400, "invalid")
    assert "file" in error["fields"]
    assert_api_error(client.post(upload_url(course), {}, content_type="application/json", **headers), 400, "invalid")
    assert_api_error(
        client.post(upload_url(course), {"file": SimpleUploadedFile("e.md", b"")}, **headers), 400, "invalid"
    )
    assert not CourseDocument.objects.exists()


def test_a_student_may_read_but_not_upload(client, api_headers, course, student, assert_api_error):
    headers = api_headers(student.user)
    document = factories.CourseDocumentFactory(course=course)

    assert_api_error(
        client.post(upload_url(course), {"file": SimpleUploadedFile("n.md", NOTES_MD)}, **headers), 403, "forbidden"
    )
    assert client.get(upload_url(course), **headers).json()["count"] == 1
    assert client.get(detail_url(document.pk), **headers).status_code == 200
    assert_api_error(client.delete(detail_url(document.pk), **headers), 403, "forbidden")
    assert CourseDocument.objects.count() == 1


def test_another_tenants_course_and_documents_are_404(client, api_headers, outsider, course, assert_api_error):
    headers = api_headers(outsider.user)
    document = factories.CourseDocumentFactory(course=course)

    assert_api_error(
        client.post(upload_url(course), {"file": SimpleUploadedFile("n.md", NOTES_MD)}, **headers), 404, "not_found"
    )
    assert_api_error(client.get(upload_url(course), **headers), 404, "not_found")
    assert_api_error(client.get(detail_url(document.pk), **headers), 404, "not_found")
    assert_api_error(_put_file(client, detail_url(document.pk), "n.md", NOTES_MD, headers), 404)
    assert_api_error(client.delete(detail_url(document.pk), **headers), 404, "not_found")
    assert_api_error(
        client.get(reverse("api:course-documents-search", args=[course.pk]), {"q": "loop"}, **headers), 404
    )
    assert CourseDocument.objects.filter(pk=document.pk).exists()


def test_a_professor_of_another_course_may_not_upload(client, api_headers, course, tenant, assert_api_error):
    other = factories.ProfessorFactory(user__tenant=tenant)
    factories.EnrollmentFactory(course=course)  # irrelevant: a professor is never enrolled

    response = client.post(
        upload_url(course), {"file": SimpleUploadedFile("n.md", NOTES_MD)}, **api_headers(other.user)
    )

    assert_api_error(response, 404, "not_found")  # the course is not theirs to see


def test_anonymous_is_401(client, course, assert_api_error):
    assert_api_error(client.post(upload_url(course), {"file": SimpleUploadedFile("n.md", NOTES_MD)}), 401)


# --- Replace, delete, list, search ----------------------------------------------------------------


def test_replace_reingests_with_a_new_revision_and_new_chunks(
    client, api_headers, professor, course, django_capture_on_commit_callbacks
):
    headers = api_headers(professor.user)
    first = _upload(client, headers, course, "notes.md", NOTES_MD, django_capture_on_commit_callbacks).json()
    document = CourseDocument.objects.get(pk=first["id"])
    old_chunks = set(document.chunks.values_list("id", flat=True))
    old_file = document.file.name

    with django_capture_on_commit_callbacks(execute=True):
        response = _put_file(
            client, detail_url(document.pk), "week1.pdf", pdf_bytes(["Recursion\nA function that calls itself."]), headers
        )

    assert response.status_code == 200, response.content
    assert (response.json()["status"], response.json()["revision"]) == ("pending", 2)
    document.refresh_from_db()
    assert (document.status, document.revision, document.page_count) == ("ready", 2, 1)
    assert document.content_type == "application/pdf"
    texts = list(document.chunks.values_list("text", flat=True))
    assert texts and all("calls itself" in text for text in texts)
    assert not old_chunks & set(document.chunks.values_list("id", flat=True))
    assert not document.file.storage.exists(old_file)


def test_delete_removes_the_document_its_chunks_and_its_file(
    client, api_headers, professor, course, django_capture_on_commit_callbacks
):
    headers = api_headers(professor.user)
    created = _upload(client, headers, course, "notes.md", NOTES_MD, django_capture_on_commit_callbacks).json()
    document = CourseDocument.objects.get(pk=created["id"])
    assert DocumentChunk.objects.filter(document=document).exists()

    with django_capture_on_commit_callbacks(execute=True):
        response = client.delete(detail_url(document.pk), **headers)

    assert response.status_code == 204
    assert not CourseDocument.objects.filter(pk=document.pk).exists()
    assert not DocumentChunk.objects.filter(document_id=document.pk).exists()
    assert not document.file.storage.exists(document.file.name)
    search = reverse("api:course-documents-search", args=[course.pk])
    assert client.get(search, {"q": "for loop stops"}, **headers).json()["results"] == []


def test_list_is_paginated_and_counts_chunks_in_constant_queries(
    client, api_headers, professor, course, django_assert_max_num_queries
):
    headers = api_headers(professor.user)
    for n in range(12):
        document = factories.CourseDocumentFactory(course=course, title=f"Doc {n:02d}")
        factories.DocumentChunkFactory.create_batch(2, document=document)
    factories.CourseDocumentFactory(course=factories.CourseFactory(tenant=course.tenant))  # another course

    with django_assert_max_num_queries(8):
        body = client.get(upload_url(course), **headers).json()

    assert body["count"] == 12
    assert [d["title"] for d in body["results"]][:2] == ["Doc 00", "Doc 01"]
    assert {d["chunk_count"] for d in body["results"]} == {2}


def test_search_shows_what_the_tutor_would_read(
    client, api_headers, professor, course, django_capture_on_commit_callbacks, assert_api_error
):
    headers = api_headers(professor.user)
    _upload(
        client, headers, course, "week1.pdf",
        pdf_bytes(["Loops\nA for loop stops when the range is exhausted.", "Functions\nreturn hands back a value."]),
        django_capture_on_commit_callbacks,
    )
    search = reverse("api:course-documents-search", args=[course.pk])

    body = client.get(search, {"q": "when does a for loop stop?"}, **headers).json()

    assert body["mode"] in {"lexical", "hybrid"}
    top = body["results"][0]
    assert (top["document"], top["page"]) == ("week1", 1)
    assert "range is exhausted" in top["text"]
    assert_api_error(client.get(search, **headers), 400, "invalid")
    assert_api_error(client.get(search, {"q": "x", "limit": 99}, **headers), 400, "invalid")


def test_a_refused_replacement_leaves_the_document_as_it_was(
    client, api_headers, professor, course, django_capture_on_commit_callbacks, assert_api_error
):
    headers = api_headers(professor.user)
    created = _upload(client, headers, course, "notes.md", NOTES_MD, django_capture_on_commit_callbacks).json()
    document = CourseDocument.objects.get(pk=created["id"])
    chunks = set(document.chunks.values_list("id", flat=True))

    assert_api_error(_put_file(client, detail_url(document.pk), "photo.png", b"png", headers), 415)

    document.refresh_from_db()
    assert (document.status, document.revision) == ("ready", 1)
    assert set(document.chunks.values_list("id", flat=True)) == chunks
    assert document.file.storage.exists(document.file.name)
