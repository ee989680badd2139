"""`document_ingest` on PDF, DOCX and PPTX: the right text under the right page, slide or heading;
unreadable files end `failed` with a reason; progress only goes up, to 100; stale and repeated
tasks write nothing."""

from __future__ import annotations

import io
import zipfile

import pytest
from django.core.files.base import ContentFile

from courses import ingestion
from courses.ingestion import document_ingest
from courses.models import CourseDocument, DocumentChunk
from courses.tasks import document_ingest_task
from tests import factories
from tests.courses.documents_support import docx_bytes, pdf_bytes, pptx_bytes

pytestmark = pytest.mark.django_db

LOOPS_PAGE = "Loops\nA for loop stops when the range is exhausted.\nA while loop stops when its condition is false."
FUNCTIONS_PAGE = "Functions\nA function returns a value with the return statement."
RECURSION_PAGE = "Recursion\nA recursive function calls itself until it reaches the base case."


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def _document(raw: bytes, name: str, **fields) -> CourseDocument:
    document = factories.CourseDocumentFactory(
        status=CourseDocument.Status.PENDING, progress=0, content_type="", **fields
    )
    document.file.save(name, ContentFile(raw), save=True)
    return document


def _ingested(raw: bytes, name: str) -> CourseDocument:
    document = _document(raw, name)
    assert document_ingest(document_id=document.pk) in {"ready", "failed"}
    document.refresh_from_db()
    return document


def _rows(document: CourseDocument) -> list[tuple]:
    return list(document.chunks.order_by("position").values_list("page", "heading", "text"))


# --- Formats --------------------------------------------------------------------------------------


def test_pdf_text_is_stored_with_its_page_numbers():
    document = _ingested(pdf_bytes([LOOPS_PAGE, FUNCTIONS_PAGE, RECURSION_PAGE]), "week1.pdf")

    assert (document.status, document.progress, document.error, document.page_count) == ("ready", 100, "", 3)
    rows = _rows(document)
    assert [page for page, _, _ in rows] == [1, 2, 3]
    assert "A for loop stops when the range is exhausted." in rows[0][2]
    assert "return statement" in rows[1][2] and "base case" in rows[2][2]
    assert all(heading == "" for _, heading, _ in rows)  # no bookmarks, no headings


def test_pdf_bookmarks_become_the_headings_of_their_pages():
    raw = pdf_bytes(
        [LOOPS_PAGE, "More about loops: nested loops run inside each other.", FUNCTIONS_PAGE],
        bookmarks=[("Loops", 0), ("Functions", 2)],
    )

    document = _ingested(raw, "week1.pdf")

    assert [(page, heading) for page, heading, _ in _rows(document)] == [
        (1, "Loops"),
        (2, "Loops"),
        (3, "Functions"),
    ]


def test_docx_paragraphs_lists_and_tables_sit_under_their_headings():
    document = _ingested(docx_bytes(), "handout.docx")

    assert document.status == "ready" and document.page_count is None
    by_heading = {heading: text for _, heading, text in _rows(document)}
    assert by_heading["Loops"] == "A for loop runs its body once for every item of a sequence."
    assert by_heading["Loops > While loops"].startswith("A while loop repeats as long as its condition")
    assert "- Forgetting to update the counter" in by_heading["Loops > While loops"]
    assert "parameter | a name in the definition" in by_heading["Functions"]
    assert all(page is None for page, _, _ in _rows(document))


def test_pptx_slides_keep_their_numbers_titles_and_notes():
    document = _ingested(pptx_bytes(), "lecture.pptx")

    assert (document.status, document.page_count) == ("ready", 3)
    rows = _rows(document)
    assert [(page, heading) for page, heading, _ in rows] == [
        (1, "Recursion"),
        (2, "Base case"),
        (3, "Call stack"),
    ]
    assert rows[0][2] == "Functions that call themselves"
    assert "Every recursion needs a base case" in rows[1][2]
    assert "factorial(0)" in rows[1][2]  # speaker notes are material too
    assert "factorial(3) | 6" in rows[2][2]


# --- Files that cannot be read --------------------------------------------------------------------


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("raw", "name", "reason"),
    [
        (pdf_bytes([LOOPS_PAGE], password="s3cret"), "locked.pdf", "password-protected"),
        (b"%PDF-1.7\n1 0 obj << /Type /Catalog >> garbage", "broken.pdf", "could not be read"),
        (b"Just some text, misnamed.", "notes.pdf", "not a PDF"),
        (pdf_bytes([""]), "scan.pdf", "no text layer"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 512, "locked.docx", "password-protected"),
        (_zip({"hello.txt": b"not a word file"}), "broken.docx", "could not be opened"),
        (b"plain text", "broken.docx", "not a valid Word"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 512, "locked.pptx", "password-protected"),
        (_zip({"ppt/nothing.xml": b"<x/>"}), "broken.pptx", "could not be opened"),
    ],
)
def test_unreadable_files_fail_with_a_reason_and_no_chunks(raw, name, reason):
    document = _document(raw, name)
    factories.DocumentChunkFactory(document=document, text="left over from an earlier version")

    assert document_ingest(document_id=document.pk) == "failed"

    document.refresh_from_db()
    assert document.status == "failed"
    assert reason in document.error, document.error
    assert document.chunks.count() == 0


def test_an_unexpected_library_error_fails_the_document_without_raising(monkeypatch):
    def explode(raw, progress):
        raise RuntimeError("pypdf bug")

    monkeypatch.setitem(ingestion.__dict__, "extractors", type("E", (), {"pdf_extract": staticmethod(explode)}))
    document = _document(pdf_bytes([LOOPS_PAGE]), "week1.pdf")

    assert document_ingest(document_id=document.pk) == "failed"

    document.refresh_from_db()
    assert document.status == "failed" and "unexpected error" in document.error


# --- Progress, idempotency, revisions --------------------------------------------------------------


def test_progress_only_rises_while_it_runs_and_ends_at_100(monkeypatch):
    document = _document(pdf_bytes([f"Page {n}. A loop repeats steps, page {n}." for n in range(1, 41)]), "long.pdf")
    seen: list[tuple[str, int]] = []
    original_set = ingestion._Progress.set

    def recording_set(self, value):
        original_set(self, value)
        seen.append(CourseDocument.objects.values_list("status", "progress").get(pk=document.pk))

    monkeypatch.setattr(ingestion._Progress, "set", recording_set)

    assert document_ingest_task.delay(document.pk, document.revision).get() == "ready"

    values = [progress for _, progress in seen]
    assert values == sorted(values), values
    assert len(set(values)) >= 10  # a bar that moves page by page, not 0 then 100
    assert all(status == "processing" for status, _ in seen)
    document.refresh_from_db()
    assert (document.status, document.progress, document.page_count) == ("ready", 100, 40)


def test_a_repeated_task_for_a_ready_document_writes_nothing():
    document = _ingested(pdf_bytes([LOOPS_PAGE]), "week1.pdf")
    chunk_ids = set(document.chunks.values_list("id", flat=True))

    assert document_ingest(document_id=document.pk, revision=document.revision) == "done"

    assert set(document.chunks.values_list("id", flat=True)) == chunk_ids


def test_a_task_for_an_older_revision_writes_nothing():
    document = _document(pdf_bytes([LOOPS_PAGE]), "week1.pdf")
    old_revision = document.revision
    CourseDocument.objects.filter(pk=document.pk).update(revision=old_revision + 1)

    assert document_ingest(document_id=document.pk, revision=old_revision) == "stale"

    document.refresh_from_db()
    assert (document.status, document.chunks.count()) == ("pending", 0)


def test_a_document_replaced_while_it_was_read_keeps_the_new_revision(monkeypatch):
    document = _document(pdf_bytes([LOOPS_PAGE]), "week1.pdf")
    original = ingestion._chunks

    def replaced_meanwhile(blocks):
        CourseDocument.objects.filter(pk=document.pk).update(revision=document.revision + 1, progress=0)
        return original(blocks)

    monkeypatch.setattr(ingestion, "_chunks", replaced_meanwhile)

    assert document_ingest(document_id=document.pk, revision=document.revision) == "stale"
    assert DocumentChunk.objects.filter(document=document).count() == 0


def test_a_deleted_document_is_gone_for_its_task():
    document = _document(pdf_bytes([LOOPS_PAGE]), "week1.pdf")
    document_id, revision = document.pk, document.revision
    document.delete()

    assert document_ingest_task.delay(document_id, revision).get() == "gone"
