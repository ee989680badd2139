"""`document_ingest_text`: plain text and Markdown become heading-aware, overlapping chunks."""

from __future__ import annotations

import itertools

import pytest
from django.core.files.base import ContentFile

from courses.ingestion import CHUNK_MAX_WORDS, document_ingest_text
from courses.models import CourseDocument, DocumentChunk
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def _document(content: bytes | str, *, name: str = "notes.md", content_type: str = "text/markdown", **fields):
    data = content.encode() if isinstance(content, str) else content
    document = factories.CourseDocumentFactory(
        content_type=content_type, status=CourseDocument.Status.PENDING, progress=0, **fields
    )
    document.file.save(name, ContentFile(data), save=True)
    return document


def _sentences(topic: str, count: int, start: int = 0) -> str:
    """`count` distinct sentences of ten words each, numbered so each is recognisable."""
    return " ".join(
        f"Sentence number {n} explains one more detail about {topic} here."
        for n in range(start, start + count)
    )


MARKDOWN = f"""# Course title

Welcome to the course notes.

## Loops

{_sentences("loops", 3)}

### for loops

A for loop goes through the items of a sequence.

```python
for i in range(3):
    print(i)
```

### while loops

A **while loop** repeats as long as its *condition* stays true. See [the docs](https://example.org).

## Functions

| term | meaning |
|------|---------|
| parameter | a name in the definition |
"""


def test_markdown_headings_become_heading_paths():
    document = _document(MARKDOWN)

    count = document_ingest_text(document=document)

    chunks = list(document.chunks.order_by("position"))
    assert count == len(chunks) == 5
    assert [c.heading for c in chunks] == [
        "Course title",  # the lone title heading names the text before the first section...
        "Loops",  # ...and is left out of the paths below it
        "Loops > for loops",
        "Loops > while loops",
        "Functions",
    ]
    assert [c.position for c in chunks] == [0, 1, 2, 3, 4]
    assert all(c.page is None and c.token_count >= len(c.text) // 4 for c in chunks)


def test_markdown_noise_is_dropped_but_code_is_kept():
    document = _document(MARKDOWN)

    document_ingest_text(document=document)

    by_heading = {c.heading: c.text for c in document.chunks.all()}
    assert "for i in range(3):\n    print(i)" in by_heading["Loops > for loops"]  # indentation kept
    assert by_heading["Loops > while loops"] == (
        "A while loop repeats as long as its condition stays true. See the docs."
    )
    assert by_heading["Functions"] == "term | meaning\nparameter | a name in the definition"


def test_long_sections_are_split_at_paragraphs_with_a_sentence_overlap():
    paragraphs = [_sentences(f"topic{p}", 6, start=p * 10) for p in range(8)]  # 8 x 60 words
    document = _document("## Long section\n\n" + "\n\n".join(paragraphs))

    document_ingest_text(document=document)

    chunks = list(document.chunks.order_by("position"))
    assert len(chunks) >= 2
    for chunk in chunks:
        assert chunk.heading == "Long section"
        assert 120 <= len(chunk.text.split()) <= CHUNK_MAX_WORDS + 45, len(chunk.text.split())
    for previous, following in itertools.pairwise(chunks):
        # The next chunk opens with the last one or two sentences of the previous one.
        opener = following.text.split("\n\n")[0]
        assert previous.text.endswith(opener)
        assert 1 <= opener.count("here.") <= 2
    every_paragraph = "\n\n".join(c.text for c in chunks)
    for paragraph in paragraphs:
        assert paragraph in every_paragraph  # nothing is lost between chunks


def test_a_single_huge_paragraph_is_split_at_sentence_ends():
    document = _document(_sentences("recursion", 60), content_type="text/plain", name="notes.txt")

    document_ingest_text(document=document)

    chunks = list(document.chunks.order_by("position"))
    assert len(chunks) >= 3
    assert all(len(c.text.split()) <= CHUNK_MAX_WORDS + 45 for c in chunks)
    assert all(c.text.endswith("here.") for c in chunks)
    assert all(c.heading == "" for c in chunks)


def test_form_feeds_are_page_breaks():
    pages = ["Page one talks about variables.", "Page two talks about loops.", "Page three: functions."]
    document = _document("\f".join(pages), content_type="text/plain", name="slides.txt")

    document_ingest_text(document=document)

    chunks = list(document.chunks.order_by("position"))
    assert [(c.page, c.text) for c in chunks] == [(1, pages[0]), (2, pages[1]), (3, pages[2])]
    document.refresh_from_db()
    assert document.page_count == 3


def test_markdown_headings_carry_over_page_breaks():
    document = _document("## Loops\n\nFirst page text.\f\nSecond page text.\n\n## Functions\n\nMore.")

    document_ingest_text(document=document)

    assert list(document.chunks.order_by("position").values_list("page", "heading", "text")) == [
        (1, "Loops", "First page text."),
        (2, "Loops", "Second page text."),
        (2, "Functions", "More."),
    ]


def test_success_marks_the_document_ready():
    document = _document(MARKDOWN)
    document.error = "an old failure"
    document.save()

    document_ingest_text(document=document)

    document.refresh_from_db()
    assert (document.status, document.progress, document.error) == ("ready", 100, "")


def test_reingesting_replaces_the_chunks():
    document = _document("## Old\n\nOld words about variables.")
    document_ingest_text(document=document)
    old_ids = set(document.chunks.values_list("id", flat=True))
    document.file.save(
        "notes.md", ContentFile(b"## New\n\nNew words about loops.\n\n## Newer\n\nMore."), save=True
    )

    assert document_ingest_text(document=document) == 2
    assert document_ingest_text(document=document) == 2  # idempotent

    chunks = list(document.chunks.order_by("position"))
    assert [(c.heading, c.text) for c in chunks] == [("New", "New words about loops."), ("Newer", "More.")]
    assert not old_ids & {c.id for c in chunks}
    assert DocumentChunk.objects.count() == 2


def test_bom_and_stray_bytes_are_tolerated():
    content = "\ufeff## Café\n\nA string is text.".encode() + b" Caf\xe9 au lait is " + b"fine. " * 200
    document = _document(content)

    document_ingest_text(document=document)

    document.refresh_from_db()
    assert document.status == "ready"
    first = document.chunks.order_by("position").first()
    assert first.heading == "Café" and first.text.startswith("A string is text. Caf\ufffd au lait")


@pytest.mark.parametrize(
    ("content", "content_type", "name", "reason"),
    [
        (b"", "text/markdown", "notes.md", "empty"),
        (b"  \n\n \f \n", "text/plain", "notes.txt", "empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "text/plain", "notes.txt", "binary"),
        (bytes(range(128, 256)) * 20, "text/plain", "notes.txt", "UTF-8"),
        (b"GIF89a\x01\x00", "image/gif", "picture.gif", "image/gif cannot be read"),
    ],
)
def test_unreadable_documents_fail_with_a_reason_and_no_chunks(content, content_type, name, reason):
    document = _document(content, content_type=content_type, name=name)
    factories.DocumentChunkFactory(document=document, text="left over from an earlier version")

    assert document_ingest_text(document=document) == 0

    document.refresh_from_db()
    assert document.status == "failed" and document.progress == 0
    assert reason in document.error
    assert document.chunks.count() == 0


def test_a_document_without_a_file_fails():
    document = factories.CourseDocumentFactory(status=CourseDocument.Status.PENDING)

    document_ingest_text(document=document)

    document.refresh_from_db()
    assert document.status == "failed" and "no file" in document.error


def test_the_type_is_taken_from_the_extension_when_unset():
    document = _document("## Heading\n\nText.", content_type="", name="notes.md")

    document_ingest_text(document=document)

    assert list(document.chunks.values_list("heading", flat=True)) == ["Heading"]
