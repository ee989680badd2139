"""Turning uploaded course material into searchable `DocumentChunk`s, with progress.

`document_ingest` is the pipeline the Celery task runs: read the file, extract its text with
where it sits (PDF pages and bookmarks, DOCX headings, PPTX slides, Markdown headings, form-feed
pages of plain text), clean it, split it along its structure into chunks of roughly 120-250 words
that open with the previous chunk's last sentences, embed them when an embeddings engine and
pgvector are there, and store them. Progress (0-100) only ever goes up while it runs; a file that
cannot be read ends `failed` with a reason for people. Running it twice writes the same chunks.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from django.db import DatabaseError, transaction
from django.utils import timezone

from courses import extractors, search_schema
from courses.embeddings import EMBEDDINGS_BATCH, EmbeddingsError, embeddings_engine
from courses.extractors import IngestionRefused
from courses.models import CourseDocument, DocumentChunk

logger = logging.getLogger(__name__)

__all__ = ["IngestionRefused", "document_format", "document_ingest", "document_ingest_text"]

MARKDOWN_TYPES = frozenset({"text/markdown", "text/x-markdown"})
PLAIN_TYPES = frozenset({"text/plain"})
# The formats we read, by file extension (what decides) and by declared content type (the fallback
# for a file without an extension).
EXTENSION_FORMATS = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".pdf": "pdf",
    ".docx": "docx",
    ".pptx": "pptx",
}
CONTENT_TYPE_FORMATS = {
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/plain": "text",
    "application/pdf": "pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": "pptx",
}
FORMAT_CONTENT_TYPES = {
    "markdown": "text/markdown",
    "text": "text/plain",
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
}

CHUNK_MIN_WORDS = 120
CHUNK_MAX_WORDS = 250
# The 1-2 sentences repeated at the start of the next chunk, so an idea cut at a chunk boundary
# is still found whole by a search that lands on either side.
OVERLAP_MAX_WORDS = 45

# More than this share of undecodable bytes means the file is not really text.
MAX_REPLACEMENT_RATIO = 0.02

# Where progress stands after each stage: extraction fills most of the bar (it is per page),
# embeddings the next part (per batch), the write the rest.
PROGRESS_STARTED = 2
PROGRESS_EXTRACTED = 60
PROGRESS_CHUNKED = 65
PROGRESS_EMBEDDED = 95

_ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
_SETEXT_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)\s*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_HORIZONTAL_RULE = re.compile(r"^ {0,3}([-*_])(\s*\1){2,}\s*$")
_TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(`*A-Z0-9])")


class IngestionDeferred(Exception):
    """A transient failure (the embeddings service is down): the task retries later."""


@dataclass(slots=True)
class _Block:
    """A paragraph, list, table or code block, with the heading path and page it sits under."""

    text: str
    heading: str
    page: int | None
    is_code: bool = False

    @property
    def words(self) -> int:
        return len(self.text.split())


@dataclass(slots=True)
class _Chunk:
    heading: str
    page: int | None
    parts: list[str] = field(default_factory=list)
    words: int = 0

    @property
    def text(self) -> str:
        return "\n\n".join(self.parts)


class _Progress:
    """Writes a document's progress as it rises, never down, and only for its revision."""

    def __init__(self, document: CourseDocument):
        self.document_id = document.pk
        self.revision = document.revision
        self.value = document.progress if document.status == CourseDocument.Status.PROCESSING else 0

    def set(self, value: float) -> None:
        value = int(max(0, min(99, value)))  # 100 is written with the chunks, as `ready`
        if value <= self.value:
            return
        self.value = value
        CourseDocument.objects.filter(
            pk=self.document_id, revision=self.revision, progress__lt=value
        ).update(progress=value, updated_at=timezone.now())

    def stage(self, start: float, end: float) -> Callable[[float], None]:
        """A callback taking the fraction (0-1) of a stage that spans `start`..`end` percent."""
        return lambda fraction: self.set(start + (end - start) * max(0.0, min(1.0, fraction)))


def document_format(*, filename: str, content_type: str = "") -> str | None:
    """"pdf", "docx", "pptx", "markdown" or "text" for a file name (its extension decides) or,
    without a known extension, its content type; None for anything else."""
    extension = PurePosixPath(filename or "").suffix.lower()
    if extension in EXTENSION_FORMATS:
        return EXTENSION_FORMATS[extension]
    return CONTENT_TYPE_FORMATS.get((content_type or "").split(";")[0].strip().lower())


def document_ingest(
    *, document_id: int, revision: int | None = None, embeddings_required: bool = False, force: bool = False
) -> str:
    """Ingest one document; returns what happened: "ready", "failed", "gone", "stale" or "done".

    Idempotent: a document already ready at this revision is left alone ("done") unless `force`;
    a task for an older revision than the document's ("stale") or for a deleted document ("gone")
    writes nothing. `embeddings_required` turns an embeddings failure into `IngestionDeferred` (the
    task retries); otherwise the chunks are stored without vectors and search stays lexical.
    """
    document = CourseDocument.objects.select_related("course").filter(pk=document_id).first()
    if document is None:
        return "gone"
    if revision is not None and document.revision != revision:
        return "stale"
    if document.status == CourseDocument.Status.READY and not force:
        return "done"
    revision = document.revision
    progress = _Progress(document)
    CourseDocument.objects.filter(pk=document.pk, revision=revision).update(
        status=CourseDocument.Status.PROCESSING, error="", updated_at=timezone.now()
    )
    progress.set(PROGRESS_STARTED)
    try:
        blocks, page_count = _extract(document, progress.stage(PROGRESS_STARTED, PROGRESS_EXTRACTED))
        progress.set(PROGRESS_EXTRACTED)
        chunks = _chunks(blocks)
        if not chunks:
            raise IngestionRefused("The file contains no text to learn from.")
        progress.set(PROGRESS_CHUNKED)
        vectors = _embed(
            document,
            chunks,
            progress.stage(PROGRESS_CHUNKED, PROGRESS_EMBEDDED),
            required=embeddings_required,
        )
    except IngestionRefused as exc:
        _mark_failed(document, revision, str(exc))
        return "failed"
    except (IngestionDeferred, DatabaseError):
        raise  # transient: the task retries
    except Exception:
        # A library choking on an odd file must end as a failed document, not a stuck one.
        logger.exception("document %s: ingestion crashed", document.pk)
        _mark_failed(
            document,
            revision,
            "An unexpected error stopped the reading of this file. Save it again (or export it to "
            "PDF) and replace it; if that does not help, tell your administrator.",
        )
        return "failed"
    return _store(document, revision, chunks, vectors, page_count)


def document_ingest_text(*, document: CourseDocument) -> int:
    """Ingest `document` now, whatever its state (any format, despite the historical name);
    returns the number of chunks stored (0 when it failed) and refreshes `document`."""
    document_ingest(document_id=document.pk, force=True)
    document.refresh_from_db()
    return document.chunks.count() if document.status == CourseDocument.Status.READY else 0


def _store(
    document: CourseDocument,
    revision: int,
    chunks: list[_Chunk],
    vectors: list[list[float]] | None,
    page_count: int | None,
) -> str:
    with transaction.atomic():
        # The row lock orders this write after a concurrent replace or delete of the document.
        current = CourseDocument.objects.select_for_update().filter(pk=document.pk).first()
        if current is None:
            return "gone"
        if current.revision != revision:
            return "stale"
        DocumentChunk.objects.filter(document_id=document.pk).delete()
        DocumentChunk.objects.bulk_create(
            DocumentChunk(
                document_id=document.pk,
                position=position,
                page=chunk.page,
                heading=chunk.heading[:500],
                text=chunk.text,
                token_count=_token_estimate(chunk.text),
                embedding=vectors[position] if vectors else None,
            )
            for position, chunk in enumerate(chunks)
        )
        CourseDocument.objects.filter(pk=document.pk).update(
            status=CourseDocument.Status.READY,
            progress=100,
            error="",
            page_count=page_count,
            updated_at=timezone.now(),
        )
    logger.info("document %s ingested: %s chunks%s", document.pk, len(chunks), " with vectors" if vectors else "")
    return "ready"


def _mark_failed(document: CourseDocument, revision: int, reason: str) -> None:
    with transaction.atomic():
        current = CourseDocument.objects.select_for_update().filter(pk=document.pk, revision=revision).first()
        if current is None:
            return
        DocumentChunk.objects.filter(document_id=document.pk).delete()
        CourseDocument.objects.filter(pk=document.pk).update(
            status=CourseDocument.Status.FAILED, progress=0, error=reason, updated_at=timezone.now()
        )
    logger.warning("document %s not ingested: %s", document.pk, reason)


def document_fail(*, document_id: int, revision: int, reason: str) -> None:
    """Mark a document failed (the task's last word after its retries ran out)."""
    document = CourseDocument.objects.filter(pk=document_id).first()
    if document is not None:
        _mark_failed(document, revision, reason)


def _token_estimate(text: str) -> int:
    # The same characters/4 rule as sessions.providers.estimate_tokens; courses may not import it.
    return max(1, (len(text) + 3) // 4) if text else 0


# --- Embeddings -----------------------------------------------------------------------------------


def _embed(
    document: CourseDocument, chunks: list[_Chunk], progress: Callable[[float], None], *, required: bool
) -> list[list[float]] | None:
    """Vectors for the chunks when an engine is configured and pgvector can store them."""
    engine = embeddings_engine()
    if engine is None or not search_schema.vector_store_ready():
        return None
    texts = [f"{chunk.heading}\n{chunk.text}" if chunk.heading else chunk.text for chunk in chunks]
    vectors: list[list[float]] = []
    try:
        for start in range(0, len(texts), EMBEDDINGS_BATCH):
            batch = engine.embed(texts[start : start + EMBEDDINGS_BATCH], tenant_id=document.course.tenant_id)
            vectors.extend([round(value, 6) for value in vector] for vector in batch)
            progress(len(vectors) / len(texts))
    except EmbeddingsError as exc:
        if required and exc.transient:
            raise IngestionDeferred(str(exc)) from exc
        logger.warning("document %s stored without vectors (search stays lexical): %s", document.pk, exc)
        return None
    return vectors


# --- Reading --------------------------------------------------------------------------------------


def _extract(document: CourseDocument, progress: Callable[[float], None]) -> tuple[list[_Block], int | None]:
    """The document's blocks and page (or slide) count."""
    if not document.file:
        raise IngestionRefused("The document has no file attached.")
    kind = document_format(filename=document.file.name, content_type=document.content_type)
    if kind is None:
        shown = document.content_type or PurePosixPath(document.file.name).suffix or "unknown"
        raise IngestionRefused(
            f"Files of type {shown} cannot be read; upload PDF, Word (.docx), PowerPoint (.pptx), "
            "Markdown (.md) or plain text (.txt)."
        )
    raw = _read_bytes(document)
    if kind in ("markdown", "text"):
        text = _decode_text(raw)
        blocks = _markdown_blocks(text) if kind == "markdown" else _plain_blocks(text)
        progress(1.0)
        return blocks, (text.count("\f") + 1 if "\f" in text else None)
    reader = {"pdf": extractors.pdf_extract, "docx": extractors.docx_extract, "pptx": extractors.pptx_extract}
    extracted = reader[kind](raw, progress)
    blocks = []
    for paragraph in extracted.paragraphs:
        cleaned = "\n".join(_clean_prose(line) for line in paragraph.text.split("\n") if line.strip())
        if cleaned:
            blocks.append(_Block(cleaned, paragraph.heading, paragraph.page))
    return blocks, extracted.page_count


def _read_bytes(document: CourseDocument) -> bytes:
    try:
        with document.file.open("rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise IngestionRefused("The file could not be read from storage; upload it again.") from exc
    if not raw.strip():
        raise IngestionRefused("The file is empty.")
    return raw


def _decode_text(raw: bytes) -> str:
    if b"\x00" in raw[:8192]:
        raise IngestionRefused("The file is not text (it contains binary data).")
    # utf-8-sig drops a byte-order mark; a few bad bytes (a stray Latin-1 character) are replaced
    # rather than failing the whole document.
    text = raw.decode("utf-8-sig", errors="replace")
    if text.count("\ufffd") > MAX_REPLACEMENT_RATIO * len(text):
        raise IngestionRefused("The file is not UTF-8 text; save it as UTF-8 and upload it again.")
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", "    ")
    if not text.replace("\f", "").strip():
        raise IngestionRefused("The file is empty.")
    return text




def _pages(text: str) -> list[tuple[int | None, str]]:
    """Form feeds are page breaks (what pdftotext writes); without any, there are no pages."""
    if "\f" not in text:
        return [(None, text)]
    return [(number, page) for number, page in enumerate(text.split("\f"), start=1)]


def _plain_blocks(text: str) -> list[_Block]:
    blocks = []
    for page, page_text in _pages(text):
        for paragraph in re.split(r"\n\s*\n", page_text):
            cleaned = _clean_prose(paragraph)
            if cleaned:
                blocks.append(_Block(cleaned, "", page))
    return blocks


def _markdown_blocks(text: str) -> list[_Block]:
    """Blocks with heading paths ("Loops > for loops"). A lone first-level title heading is the
    document's name, not a section, so it is left out of the paths of the sections under it."""
    headings: list[tuple[int, str]] = []  # the open headings: (level, title)
    raw_blocks: list[tuple[str, list[tuple[int, str]], int | None, bool]] = []
    paragraph: list[str] = []
    paragraph_page: int | None = None

    def flush() -> None:
        if paragraph:
            raw_blocks.append(("\n".join(paragraph), list(headings), paragraph_page, False))
            paragraph.clear()

    lines = [(page, line) for page, page_text in _pages(text) for line in page_text.split("\n")]
    index = 0
    while index < len(lines):
        page, line = lines[index]
        if page != paragraph_page:
            flush()  # a paragraph never spans a page break, so every chunk has one page
            paragraph_page = page
        if fence := _FENCE.match(line):
            flush()
            code: list[str] = []
            index += 1
            while index < len(lines) and not lines[index][1].lstrip().startswith(fence.group(1)):
                code.append(lines[index][1].rstrip())
                index += 1
            if any(code_line.strip() for code_line in code):
                raw_blocks.append(("\n".join(code), list(headings), page, True))
        elif heading := _ATX_HEADING.match(line):
            flush()
            _open_heading(headings, len(heading.group(1)), _clean_inline(heading.group(2)))
        elif _SETEXT_UNDERLINE.match(line) and len(paragraph) == 1 and not _LIST_ITEM.match(paragraph[0]):
            title = _clean_inline(paragraph.pop())
            _open_heading(headings, 1 if line.strip().startswith("=") else 2, title)
        elif not line.strip() or _HORIZONTAL_RULE.match(line):
            flush()
        else:
            paragraph.append(line)
        index += 1
    flush()

    titles = [heading for _, heading_list, _, _ in raw_blocks for heading in heading_list]
    level_one = {title for level, title in titles if level == 1}
    document_title = next(iter(level_one)) if len(level_one) == 1 else None

    blocks = []
    for body, heading_list, page, is_code in raw_blocks:
        path = [title for level, title in heading_list if not (level == 1 and title == document_title)]
        heading = " > ".join(path) or (document_title or "")
        cleaned = _fence(body) if is_code else _clean_markdown_paragraph(body)
        if cleaned:
            blocks.append(_Block(cleaned, heading, page, is_code))
    return blocks


def _open_heading(headings: list[tuple[int, str]], level: int, title: str) -> None:
    while headings and headings[-1][0] >= level:
        headings.pop()
    if title:
        headings.append((level, title))


def _fence(code: str) -> str:
    # Code is kept verbatim (students ask about it); the language tag is dropped from the fence
    # because "python" in every code chunk would only add noise to search.
    lines = code.split("\n")
    indent = min((len(line) - len(line.lstrip()) for line in lines if line.strip()), default=0)
    body = "\n".join(line[indent:] for line in lines).strip("\n")
    return f"```\n{body}\n```"


# --- Cleaning -------------------------------------------------------------------------------------


def _clean_inline(text: str) -> str:
    """Markdown inline markup that hurts search and quoting; `code` spans are kept as they are."""
    parts = re.split(r"(`[^`]*`)", text)
    for i in range(0, len(parts), 2):  # even parts are outside code spans
        part = re.sub(r"!\[([^\]]*)\]\([^)]*\)", r"\1", parts[i])  # images: keep the alt text
        part = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", part)  # links: keep the link text
        part = re.sub(r"</?[A-Za-z][^>\n]*>", "", part)  # inline HTML tags
        # Outside code, ** is always bold (the power operator would be in a code span).
        part = part.replace("**", "")
        part = re.sub(r"(?<!\w)__(?=\S)(.+?)(?<=\S)__(?!\w)", r"\1", part)
        parts[i] = re.sub(r"(?<![\w*])\*(?=\S)([^*]+?)(?<=\S)\*(?![\w*])", r"\1", part)
    return re.sub(r"\s+", " ", "".join(parts)).strip()


def _clean_prose(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _clean_markdown_paragraph(text: str) -> str:
    """One paragraph, list or table: wrapped lines joined, one line per list item or table row."""
    lines = [re.sub(r"^\s*>\s?", "", line) for line in text.split("\n")]  # blockquote markers
    if any(_TABLE_SEPARATOR.match(line) for line in lines):
        rows = []
        for line in lines:
            if _TABLE_SEPARATOR.match(line):
                continue
            cells = [_clean_inline(cell) for cell in line.strip().strip("|").split("|")]
            rows.append(" | ".join(cell for cell in cells if cell))
        return "\n".join(row for row in rows if row)
    items: list[str] = []
    for line in lines:
        if _LIST_ITEM.match(line) or not items:
            items.append(line)
        else:
            items[-1] += " " + line
    cleaned = []
    for item in items:
        bullet = _LIST_ITEM.match(item)
        body = _clean_inline(item[bullet.end() :] if bullet else item)
        if body:
            cleaned.append(f"{bullet.group(0).strip()} {body}" if bullet else body)
    return "\n".join(cleaned)


# --- Chunking -------------------------------------------------------------------------------------


def _sentences(text: str) -> list[str]:
    return [sentence for sentence in _SENTENCE_END.split(text.replace("\n", " ")) if sentence.strip()]


def _pack(units: list[str]) -> list[list[str]]:
    """Consecutive units (sentences, code lines) grouped into runs of at most a chunk's words."""
    runs: list[list[str]] = [[]]
    words = 0
    for unit in units:
        unit_words = len(unit.split())
        if runs[-1] and words + unit_words > CHUNK_MAX_WORDS:
            runs.append([])
            words = 0
        runs[-1].append(unit)
        words += unit_words
    return runs


def _split_long(block: _Block) -> list[_Block]:
    """A single block longer than a chunk: prose at sentence ends, code at line ends."""
    if block.is_code:
        code_lines = block.text.split("\n")[1:-1]  # inside the fences
        return [
            _Block("```\n" + "\n".join(run) + "\n```", block.heading, block.page, True)
            for run in _pack(code_lines)
        ]
    return [_Block(" ".join(run), block.heading, block.page) for run in _pack(_sentences(block.text))]


def _overlap(block: _Block) -> str:
    """The last one or two sentences of a prose block, to open the next chunk with."""
    if block.is_code:
        return ""
    sentences = _sentences(block.text)
    tail: list[str] = []
    for sentence in reversed(sentences[-2:]):
        if len(" ".join([sentence, *tail]).split()) > OVERLAP_MAX_WORDS:
            break
        tail.insert(0, sentence)
    return " ".join(tail)


def _chunks(blocks: list[_Block]) -> list[_Chunk]:
    """Sections (same heading and page) become one chunk each when short; long ones are split at
    block boundaries into chunks of even size, each opening with the previous one's last
    sentences."""
    sections: list[list[_Block]] = []
    for block in blocks:
        if sections and (sections[-1][0].heading, sections[-1][0].page) == (block.heading, block.page):
            sections[-1].append(block)
        else:
            sections.append([block])

    chunks: list[_Chunk] = []
    for section in sections:
        pieces = [
            piece
            for block in section
            for piece in (_split_long(block) if block.words > CHUNK_MAX_WORDS else [block])
        ]
        total = sum(piece.words for piece in pieces)
        # Aim for equal parts (460 words: three of about 150, not 250 + 200 + a stub of 10), counting
        # only a chunk's own words: the overlap it opens with is on top.
        parts = 1 if total <= CHUNK_MAX_WORDS else math.ceil(total / (CHUNK_MAX_WORDS - OVERLAP_MAX_WORDS))
        target = max(CHUNK_MIN_WORDS, total / parts)
        current = _Chunk(section[0].heading, section[0].page)
        own_words = 0
        remaining = total
        previous: _Block | None = None
        for piece in pieces:
            # Close the chunk when the piece would take it further past the target than it is short
            # of it (unless only a stub would be left for the next one), or past the maximum.
            past_target = own_words + piece.words / 2 > target and remaining >= CHUNK_MIN_WORDS / 2
            if own_words and (past_target or current.words + piece.words > CHUNK_MAX_WORDS):
                chunks.append(current)
                current = _Chunk(section[0].heading, section[0].page)
                own_words = 0
                overlap = _overlap(previous) if previous else ""
                if overlap and overlap != piece.text:
                    current.parts.append(overlap)
                    current.words += len(overlap.split())
            current.parts.append(piece.text)
            current.words += piece.words
            own_words += piece.words
            remaining -= piece.words
            previous = piece
        if current.parts:
            chunks.append(current)
    return chunks
