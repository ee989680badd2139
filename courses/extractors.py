"""Reading the text out of PDF, DOCX and PPTX files, with where each paragraph sits.

Each reader takes the file's bytes and a `progress(fraction)` callback and returns `Paragraph`s
(text, heading path, page or slide number) in reading order; `courses.ingestion` cleans and
chunks them like Markdown. A file that cannot be read raises `IngestionRefused` with a reason
for people; nothing here lets a library's exception escape.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

Progress = Callable[[float], None]

# OLE2 compound file: what Office writes for a password-protected .docx/.pptx (and old .doc/.ppt).
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
ZIP_MAGIC = b"PK\x03\x04"


class IngestionRefused(Exception):
    """The document cannot be ingested; the message is shown to the professor as is."""


@dataclass(slots=True)
class Paragraph:
    text: str
    heading: str
    page: int | None


@dataclass(slots=True)
class Extracted:
    paragraphs: list[Paragraph]
    page_count: int | None


def _office_container_check(raw: bytes, kind: str, extension: str) -> None:
    if raw.startswith(OLE2_MAGIC):
        raise IngestionRefused(
            f"The {kind} file is password-protected (or in the old binary format). Remove the "
            f"password, or save it as {extension}, and upload it again."
        )
    if not raw.startswith(ZIP_MAGIC):
        raise IngestionRefused(f"The file is not a valid {kind} ({extension}) file; it may be damaged.")


def _open_heading(headings: list[tuple[int, str]], level: int, title: str) -> None:
    while headings and headings[-1][0] >= level:
        headings.pop()
    if title:
        headings.append((level, title))


def _path(headings: list[tuple[int, str]]) -> str:
    return " > ".join(title for _, title in headings)


# --- PDF ------------------------------------------------------------------------------------------


def _pdf_outline_pages(reader: Any) -> list[tuple[int, str]]:
    """(first page index, title path) of each outline (bookmark) entry, in page order."""
    entries: list[tuple[int, str]] = []

    def walk(items: list, parents: list[str]) -> None:
        last_title: str | None = None
        for item in items:
            if isinstance(item, list):  # the children of the previous entry
                walk(item, [*parents, last_title] if last_title else parents)
                continue
            try:
                page_index = reader.get_destination_page_number(item)
                title = re.sub(r"\s+", " ", str(item.title or "")).strip()
            except Exception:  # a broken bookmark is no reason to refuse the document
                logger.debug("PDF bookmark unreadable; skipped", exc_info=True)
                continue
            last_title = title
            if page_index is not None and page_index >= 0 and title:
                entries.append((page_index, " > ".join([*parents, title])))

    try:
        walk(list(reader.outline or []), [])
    except Exception:
        logger.info("PDF outline unreadable; pages get no headings")
        return []
    entries.sort(key=lambda entry: entry[0])
    return entries


def _pdf_page_paragraphs(text: str) -> list[str]:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u00ad", "")
    text = re.sub(r"(\w)-\n(\w)", r"\1\2", text)  # words hyphenated at a line end
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        cleaned = re.sub(r"\s+", " ", block).strip()
        if cleaned:
            paragraphs.append(cleaned)
    return paragraphs


def pdf_extract(raw: bytes, progress: Progress) -> Extracted:
    """Text per page (1-based page numbers), headed by the PDF's bookmarks when it has some."""
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError

    if b"%PDF-" not in raw[:1024]:
        raise IngestionRefused("The file is not a PDF (no PDF header); it may be damaged or misnamed.")
    try:
        reader = PdfReader(io.BytesIO(raw), strict=False)
        if reader.is_encrypted:
            try:
                # Many PDFs are encrypted with an empty user password (copy protection only).
                decrypted = reader.decrypt("")
            except (DependencyError, NotImplementedError, PdfReadError) as exc:
                raise IngestionRefused(
                    "The PDF is encrypted in a way that cannot be opened here. Save an unprotected "
                    "copy and upload it again."
                ) from exc
            if not decrypted:
                raise IngestionRefused(
                    "The PDF is password-protected. Remove the password (print or save an unprotected "
                    "copy) and upload it again."
                )
        page_count = len(reader.pages)
    except IngestionRefused:
        raise
    except FileNotDecryptedError as exc:
        raise IngestionRefused("The PDF is password-protected. Upload a copy without a password.") from exc
    except Exception as exc:  # pypdf raises many kinds on a damaged file
        raise IngestionRefused("The PDF could not be read; it may be damaged. Export it again and upload it.") from exc
    if page_count == 0:
        raise IngestionRefused("The PDF has no pages.")

    outline = _pdf_outline_pages(reader)
    paragraphs: list[Paragraph] = []
    outline_index = -1
    for index in range(page_count):
        while outline_index + 1 < len(outline) and outline[outline_index + 1][0] <= index:
            outline_index += 1
        heading = outline[outline_index][1] if outline_index >= 0 else ""
        try:
            text = reader.pages[index].extract_text() or ""
        except Exception:  # one unreadable page must not lose the others
            logger.info("PDF page %s unreadable; skipped", index + 1)
            text = ""
        paragraphs.extend(Paragraph(p, heading, index + 1) for p in _pdf_page_paragraphs(text))
        progress((index + 1) / page_count)
    if not paragraphs:
        raise IngestionRefused(
            "The PDF has no text layer (it may be scanned images). Run it through OCR, or upload the "
            "original document, and try again."
        )
    return Extracted(paragraphs, page_count)


# --- DOCX -----------------------------------------------------------------------------------------

_DOCX_HEADING = re.compile(r"^heading (\d)$", re.IGNORECASE)


def _docx_blocks(document: Any) -> Iterator[Any]:
    """Paragraphs and tables of the body, in order."""
    yield from document.iter_inner_content()


def docx_extract(raw: bytes, progress: Progress) -> Extracted:
    """Paragraphs, lists and tables under their heading path (Word's Title / Heading N styles).

    Word files have no fixed pages (that depends on the printer), so chunks carry no page number;
    the heading path is the citation."""
    _office_container_check(raw, "Word", ".docx")
    try:
        import docx
        from docx.table import Table

        document = docx.Document(io.BytesIO(raw))
        blocks = list(_docx_blocks(document))
    except Exception as exc:
        raise IngestionRefused("The Word file could not be opened; it may be damaged. Save it again as .docx.") from exc

    headings: list[tuple[int, str]] = []
    # The Title style names the document, like a lone Markdown "# Title": it heads what comes
    # before the first section but is left out of the sections' paths.
    title = ""
    paragraphs: list[Paragraph] = []
    for number, block in enumerate(blocks, start=1):
        if isinstance(block, Table):
            rows = []
            for row in block.rows:
                cells = []
                for cell in row.cells:
                    value = re.sub(r"\s+", " ", cell.text).strip()
                    if value and (not cells or cells[-1] != value):  # merged cells repeat
                        cells.append(value)
                if cells:
                    rows.append(" | ".join(cells))
            if rows:
                paragraphs.append(Paragraph("\n".join(rows), _path(headings) or title, None))
        else:
            text = re.sub(r"\s+", " ", block.text).strip()
            style = (block.style.name if block.style is not None else "") or ""
            if heading := _DOCX_HEADING.match(style):
                _open_heading(headings, int(heading.group(1)), text)
            elif style.lower() == "title":
                title = title or text
            elif text:
                bullet = "- " if style.lower().startswith("list") else ""
                paragraphs.append(Paragraph(bullet + text, _path(headings) or title, None))
        if number % 50 == 0:
            progress(number / len(blocks))
    progress(1.0)
    if not paragraphs:
        raise IngestionRefused("The Word file contains no text to learn from.")
    return Extracted(paragraphs, None)


# --- PPTX -----------------------------------------------------------------------------------------


def _pptx_shape_texts(shapes: Any, skip_id: int | None) -> Iterator[str]:
    for shape in shapes:
        if skip_id is not None and shape.shape_id == skip_id:  # the title: it is the heading
            continue
        if getattr(shape, "shape_type", None) == 6 and hasattr(shape, "shapes"):  # a group
            yield from _pptx_shape_texts(shape.shapes, skip_id)
        elif getattr(shape, "has_text_frame", False) and shape.has_text_frame:
            items = [
                (paragraph.level, re.sub(r"\s+", " ", "".join(run.text for run in paragraph.runs)).strip())
                for paragraph in shape.text_frame.paragraphs
            ]
            items = [(level, text) for level, text in items if text]
            if len(items) == 1:
                yield items[0][1]
            elif items:  # a bulleted text box: one line per bullet, indented by level
                yield "\n".join("  " * level + "- " + text for level, text in items)
        elif getattr(shape, "has_table", False) and shape.has_table:
            rows = []
            for row in shape.table.rows:
                cells = [re.sub(r"\s+", " ", cell.text).strip() for cell in row.cells]
                if any(cells):
                    rows.append(" | ".join(cell for cell in cells if cell))
            if rows:
                yield "\n".join(rows)


def pptx_extract(raw: bytes, progress: Progress) -> Extracted:
    """Each slide's title (the heading), its text boxes and tables, and its speaker notes, with
    the slide number as the page."""
    _office_container_check(raw, "PowerPoint", ".pptx")
    try:
        from pptx import Presentation

        presentation = Presentation(io.BytesIO(raw))
        slides = list(presentation.slides)
    except Exception as exc:
        raise IngestionRefused(
            "The PowerPoint file could not be opened; it may be damaged. Save it again as .pptx."
        ) from exc
    if not slides:
        raise IngestionRefused("The presentation has no slides.")

    paragraphs: list[Paragraph] = []
    for number, slide in enumerate(slides, start=1):
        try:
            title_shape = slide.shapes.title
            title = re.sub(r"\s+", " ", title_shape.text).strip() if title_shape is not None else ""
            heading = title or f"Slide {number}"
            title_id = title_shape.shape_id if title_shape is not None else None
            for text in _pptx_shape_texts(slide.shapes, title_id):
                paragraphs.append(Paragraph(text, heading, number))
            if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
                notes = slide.notes_slide.notes_text_frame.text.strip()
                if notes:
                    paragraphs.append(Paragraph(re.sub(r"[ \t]+", " ", notes), heading, number))
            if title and not any(p.page == number for p in paragraphs):
                paragraphs.append(Paragraph(title, heading, number))  # a title-only slide
        except Exception:  # one odd slide must not lose the others
            logger.info("PPTX slide %s unreadable; skipped", number)
        progress(number / len(slides))
    if not paragraphs:
        raise IngestionRefused("The presentation contains no text to learn from.")
    return Extracted(paragraphs, len(slides))
