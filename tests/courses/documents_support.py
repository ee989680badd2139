"""Course material files made by the tests (PDF, DOCX, PPTX) and an OpenAI embeddings stand-in.

PDFs come from a tiny writer (one Helvetica text object per page), then pypdf adds bookmarks or a
password; DOCX and PPTX come from python-docx and python-pptx.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from courses.search_schema import EMBEDDING_DIMENSIONS

# --- PDF ------------------------------------------------------------------------------------------


def _pdf_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def pdf_bytes(pages: list[str], *, bookmarks: list[tuple[str, int]] | None = None, password: str = "") -> bytes:
    """A PDF with one page per string (lines split on "\\n"); `bookmarks` are (title, page index)."""
    objects: list[bytes] = []
    page_ids = [4 + 2 * index for index in range(len(pages))]
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    kids = " ".join(f"{page_id} 0 R" for page_id in page_ids)
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    for index, text in enumerate(pages):
        content_id = page_ids[index] + 1
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {content_id} 0 R "
            "/Resources << /Font << /F1 3 0 R >> >> >>".encode()
        )
        lines = "".join(f"({_pdf_text(line)}) Tj T*\n" for line in text.split("\n"))
        stream = f"BT /F1 11 Tf 14 TL 72 720 Td\n{lines}ET".encode("latin-1")
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    raw = out.getvalue()
    if not bookmarks and not password:
        return raw

    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(raw)))
    for title, page_index in bookmarks or []:
        writer.add_outline_item(title=title, page_number=page_index)
    if password:
        writer.encrypt(user_password=password, owner_password=password + "-owner", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


# --- DOCX and PPTX --------------------------------------------------------------------------------


def docx_bytes() -> bytes:
    """A Word file: a title, two sections (one with a sub-section), a bulleted list and a table."""
    import docx

    document = docx.Document()
    document.add_heading("Week 3 handout", level=0)
    document.add_heading("Loops", level=1)
    document.add_paragraph("A for loop runs its body once for every item of a sequence.")
    document.add_heading("While loops", level=2)
    document.add_paragraph("A while loop repeats as long as its condition stays true.")
    document.add_paragraph("Forgetting to update the counter", style="List Bullet")
    document.add_paragraph("Testing the wrong condition", style="List Bullet")
    document.add_heading("Functions", level=1)
    document.add_paragraph("A function packages steps under a name; return hands back its result.")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text = "parameter"
    table.cell(0, 1).text = "a name in the definition"
    table.cell(1, 0).text = "argument"
    table.cell(1, 1).text = "the value passed in a call"
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def pptx_bytes() -> bytes:
    """Three slides: a title slide, a bulleted slide with speaker notes, and a slide with a table."""
    from pptx import Presentation
    from pptx.util import Inches

    presentation = Presentation()
    slide = presentation.slides.add_slide(presentation.slide_layouts[0])
    slide.shapes.title.text = "Recursion"
    slide.placeholders[1].text = "Functions that call themselves"

    slide = presentation.slides.add_slide(presentation.slide_layouts[1])
    slide.shapes.title.text = "Base case"
    body = slide.placeholders[1].text_frame
    body.text = "Every recursion needs a base case"
    bullet = body.add_paragraph()
    bullet.text = "Without one the calls never stop"
    bullet.level = 1
    slide.notes_slide.notes_text_frame.text = "Ask the class what happens to factorial(0)."

    slide = presentation.slides.add_slide(presentation.slide_layouts[5])
    slide.shapes.title.text = "Call stack"
    shape = slide.shapes.add_table(2, 2, Inches(1), Inches(2), Inches(6), Inches(1.5))
    shape.table.cell(0, 0).text = "call"
    shape.table.cell(0, 1).text = "returns"
    shape.table.cell(1, 0).text = "factorial(3)"
    shape.table.cell(1, 1).text = "6"
    buffer = io.BytesIO()
    presentation.save(buffer)
    return buffer.getvalue()


# --- Embeddings stand-in --------------------------------------------------------------------------


def hashed_vector(text: str) -> list[float]:
    """A deterministic bag-of-words vector: texts sharing words are close. Enough for tests."""
    vector = [0.0] * EMBEDDING_DIMENSIONS
    for word in re.findall(r"[a-z]{3,}", text.lower()):
        word = word.rstrip("s")
        digest = hashlib.sha256(word.encode()).digest()
        vector[int.from_bytes(digest[:4], "big") % EMBEDDING_DIMENSIONS] += 1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


class EmbeddingsStandin:
    """A local OpenAI `/v1/embeddings` server. `fail_next(n, status)` answers errors n times."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self._failures: list[int] = []
        self._lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                with standin._lock:
                    standin.requests.append(body)
                    failure = standin._failures.pop(0) if standin._failures else None
                if failure or not self.path.endswith("/embeddings"):
                    payload = json.dumps({"error": {"message": "stand-in failure", "type": "server_error"}}).encode()
                    self.send_response(failure or 404)
                else:
                    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
                    payload = json.dumps(
                        {
                            "object": "list",
                            "model": body.get("model"),
                            "data": [
                                {"object": "embedding", "index": i, "embedding": hashed_vector(text)}
                                for i, text in enumerate(inputs)
                            ],
                            "usage": {"prompt_tokens": 1, "total_tokens": 1},
                        }
                    ).encode()
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def fail_next(self, times: int, status: int = 503) -> None:
        with self._lock:
            self._failures.extend([status] * times)

    def __enter__(self) -> EmbeddingsStandin:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
