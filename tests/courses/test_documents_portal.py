"""The course page's documents section: what professors and students see, its constant query
count, the "search the materials" box and deleting from the portal."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from courses.ingestion import document_ingest_text
from courses.models import CourseDocument
from courses.services import DEMO_NOTES_FILE
from tests import factories

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_password_hashing")]


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def notes(course) -> CourseDocument:
    document = factories.CourseDocumentFactory(course=course, title="CS101 notes", status="pending", content_type="")
    document.file.save("notes.md", ContentFile(DEMO_NOTES_FILE.read_bytes()), save=True)
    document_ingest_text(document=document)
    return document


def section(course) -> str:
    return reverse("course-documents", args=[course.pk])


def search(course) -> str:
    return reverse("course-documents-search", args=[course.pk])


def test_professors_get_the_upload_box_search_box_and_counts(client, professor, course, notes):
    client.force_login(professor.user)

    html = client.get(reverse("course-detail", args=[course.pk])).content.decode()

    assert "data-dropzone" in html and 'type="file"' in html and "multiple" in html
    assert reverse("api:course-documents", args=[course.pk]) in html  # where documents.js uploads
    assert 'id="document-search-q"' in html and search(course) in html
    assert f"{notes.chunks.count()} passages" in html
    assert "js/documents.js" in html
    assert reverse("course-document-delete", args=[course.pk, notes.pk]) in html
    assert reverse("api:document-detail", args=[notes.pk]) in html  # replace


def test_students_see_the_documents_but_no_tools(client, student, course, notes):
    client.force_login(student.user)

    html = client.get(reverse("course-detail", args=[course.pk])).content.decode()

    assert "CS101 notes" in html
    assert "data-dropzone" not in html and "document-search-q" not in html and "Delete" not in html


def test_the_section_polls_while_a_document_is_being_read_and_stops_after(client, professor, course, notes):
    client.force_login(professor.user)
    assert 'hx-trigger="every 2s"' not in client.get(section(course)).content.decode()

    CourseDocument.objects.filter(pk=notes.pk).update(status="processing", progress=37)
    html = client.get(section(course)).content.decode()

    assert 'hx-trigger="every 2s"' in html and 'aria-valuenow="37"' in html
    assert 'hx-preserve="true"' in html  # the tools survive the swaps


def test_the_section_costs_the_same_queries_for_2_or_20_documents(
    client, professor, course, django_assert_max_num_queries
):
    client.force_login(professor.user)
    for n in range(2):
        factories.DocumentChunkFactory.create_batch(3, document=factories.CourseDocumentFactory(course=course, title=f"A{n}"))
    with CaptureQueriesContext(connection) as small:
        client.get(section(course))
    for n in range(18):
        factories.DocumentChunkFactory.create_batch(3, document=factories.CourseDocumentFactory(course=course, title=f"B{n}"))

    with django_assert_max_num_queries(len(small.captured_queries)):
        response = client.get(section(course))

    assert response.content.decode().count('role="progressbar"') == 20
    assert response.content.decode().count("3 passages") == 20


def test_the_search_box_shows_what_the_tutor_would_read(client, professor, course, notes):
    client.force_login(professor.user)

    html = client.get(search(course), {"q": "what is a base case in recursion?"}, headers={"HX-Request": "true"}).content.decode()

    assert "8. Recursion" in html and "CS101 notes" in html
    assert reverse("course-document-file", args=[course.pk, notes.pk]) in html
    assert "by words" in html
    assert "<html" not in html
    nothing = client.get(search(course), {"q": "zebra quasar"}).content.decode()
    assert "Nothing in the ready materials matches" in nothing


def test_the_search_box_is_for_the_course_professors_only(client, student, outsider, course, notes):
    client.force_login(student.user)
    assert client.get(search(course), {"q": "loop"}).status_code == 403
    client.force_login(outsider.user)
    assert client.get(search(course), {"q": "loop"}).status_code == 404


def test_deleting_from_the_portal(client, professor, student, course, notes):
    url = reverse("course-document-delete", args=[course.pk, notes.pk])
    client.force_login(student.user)
    assert client.post(url).status_code == 403
    assert client.get(url).status_code == 405

    client.force_login(professor.user)
    response = client.post(url)

    assert response.status_code == 302 and response.url.endswith("#documents")
    assert not CourseDocument.objects.filter(pk=notes.pk).exists()


def test_an_ingestion_left_behind_by_a_stopped_server_is_resumed(
    client, professor, course, notes, settings, monkeypatch, django_capture_on_commit_callbacks
):
    from datetime import timedelta

    from django.utils import timezone

    from courses import documents

    class InlineExecutor:
        def submit(self, fn, *args):
            fn(*args)

    settings.DOCUMENT_INGEST_IN_THREAD = True
    monkeypatch.setattr(documents, "_executor", InlineExecutor())
    monkeypatch.setattr(documents, "_in_flight", set())
    # The worker thread closes its connection when done; inline, that would be the test's own.
    monkeypatch.setattr(documents, "close_old_connections", lambda: None)
    notes.chunks.all().delete()
    CourseDocument.objects.filter(pk=notes.pk).update(status="processing", progress=40)
    client.force_login(professor.user)
    with django_capture_on_commit_callbacks(execute=True):
        client.get(section(course))  # still moving recently: left alone
    assert CourseDocument.objects.get(pk=notes.pk).status == "processing"

    CourseDocument.objects.filter(pk=notes.pk).update(updated_at=timezone.now() - timedelta(minutes=11))
    with django_capture_on_commit_callbacks(execute=True):
        client.get(section(course))
    notes.refresh_from_db()
    assert (notes.status, notes.progress) == ("ready", 100)
    assert notes.chunks.exists()
