"""End to end: a professor uploads a PDF through the API, a student asks the tutor through the
conversation messages API, and the reply cites the document at the page that answers."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from tests import factories
from tests.courses.documents_support import pdf_bytes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_password_hashing")]

PAGES = [
    "Variables\nA variable is a name that refers to a value. Assignment uses the equals sign.",
    "Loops\nA for loop repeats its body once for each item. The loop stops when the range is exhausted.",
    "Recursion\nA recursive function calls itself. The base case stops the recursion, otherwise the "
    "calls never end and Python raises RecursionError.",
]


@pytest.fixture(autouse=True)
def _in_line(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.DOCUMENT_INGEST_IN_THREAD = False


@pytest.fixture
def offline_tutor(db):
    return factories.LLMModelFactory(
        tenant=None, position=1, provider="offline", model_name="offline-socratic",
        base_url_setting="", api_key_setting="",
    )


def test_a_tutor_answer_cites_the_uploaded_document_at_its_page(
    client, api_headers, professor, course, student, outsider, offline_tutor
):
    uploaded = client.post(
        reverse("api:course-documents", args=[course.pk]),
        {
            "file": SimpleUploadedFile(
                "week2.pdf", pdf_bytes(PAGES, bookmarks=[("Variables", 0), ("Loops", 1), ("Recursion", 2)])
            ),
            "title": "Week 2 slides",
        },
        **api_headers(professor.user),
    )
    assert uploaded.status_code == 201, uploaded.content
    document_id = uploaded.json()["id"]
    status = client.get(reverse("api:document-detail", args=[document_id]), **api_headers(professor.user)).json()
    assert status["status"] == "ready", status
    # Material of another tenant with the same words must never be cited.
    foreign = factories.CourseDocumentFactory(course=outsider.courses.first(), title="Foreign notes")
    factories.DocumentChunkFactory(document=foreign, heading="Recursion", text=PAGES[2], page=9)

    headers = api_headers(student.user)
    conversation = client.post(
        "/api/v1/conversations/", {"course": course.pk, "mode": "qa"}, content_type="application/json", **headers
    ).json()
    response = client.post(
        f"/api/v1/conversations/{conversation['id']}/messages/",
        {"text": "What stops a recursion? What is the base case?"},
        content_type="application/json",
        **headers,
    )

    assert response.status_code == 201, response.content
    reply = response.json()["reply"]
    assert reply["status"] == "complete" and reply["offline"] is True
    assert reply["citations"], reply
    citation = reply["citations"][0]
    assert citation["document"] == "Week 2 slides"
    assert citation["page"] == 3
    assert "base case" in citation["snippet"].lower()
    assert citation["url"] == reverse("course-document-file", args=[course.pk, document_id]) + "#page=3"
    assert all(c["document"] != "Foreign notes" for c in reply["citations"])
    # The link opens the uploaded file for the student.
    client.force_login(student.user)
    opened = client.get(citation["url"].split("#")[0])
    assert opened.status_code == 200 and opened["Content-Type"] == "application/pdf"
