"""Retrieval latency over 10,000 chunks (lexical, semantic, hybrid) and ingestion throughput.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/aiprof_bench .venv/bin/python bench/retrieval.py
    .venv/bin/python bench/retrieval.py            # SQLite scratch file: lexical (FTS5) only

The database must exist (and be disposable: the script migrates it and adds its rows, which it
deletes again at the end). It loads one course with --chunks chunks (default 10,000) of
generated course prose (~150 words each, a Zipf-distributed vocabulary of real programming words
and made-up ones), plus as many chunks in other courses and another tenant that the searches must
skip. Embeddings are deterministic hashed bag-of-words vectors (384 dimensions, the size every
engine is asked for), not a model: the figures are the database's cost (pgvector HNSW search
plus the full-text query), with no embeddings call. `passages_search` is timed whole (SQL,
fusion, row building), top 5, --queries questions per mode after a warm-up.

Ingestion: a 200-page PDF made here (~250 words a page), through `document_ingest` (read with
pypdf, clean, chunk, store, lexical index by trigger/generated column), without embeddings and
with the deterministic ones. Results go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUESTIONS = [
    "how does a for loop know when to stop",
    "what is the difference between a list and a dictionary",
    "why does my recursive function never end",
    "what does return do in a function",
    "how do I read a traceback",
    "what is a base case",
    "why do I get a KeyError",
    "how does binary search work",
    "what is an infinite loop",
    "how do I convert a string to an integer",
    "when does elif run",
    "what is variable scope",
]
REAL_WORDS = [
    *("loop", "for", "while", "range", "list", "dictionary", "key", "value", "index", "function"),
    *("return", "parameter", "argument", "recursion", "base", "case", "stack", "call", "variable"),
    *("assignment", "string", "integer", "float", "boolean", "condition", "branch", "elif", "else"),
    *("error", "exception", "traceback", "keyerror", "debug", "test", "algorithm", "search", "sort"),
    *("binary", "linear", "iteration", "counter", "accumulator", "slice", "append", "insert"),
    *("remove", "scope", "global", "local", "module", "import", "convert", "infinite", "read"),
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(name: str, seconds: list[float]) -> str:
    ms = [s * 1000 for s in seconds]
    return (
        f"{name:<10} n={len(ms):<4} p50={percentile(ms, 0.5):6.2f} ms  p95={percentile(ms, 0.95):6.2f} ms  "
        f"p99={percentile(ms, 0.99):6.2f} ms  mean={statistics.fmean(ms):6.2f} ms"
    )


def vocabulary(rng: random.Random, size: int = 6000) -> tuple[list[str], list[float]]:
    made_up = {"".join(rng.choice("bcdfghklmnprstvz") + rng.choice("aeiou") for _ in range(rng.randint(2, 4)))
               for _ in range(size)}
    words = REAL_WORDS + sorted(made_up)
    weights = [1.0 / (rank + 1) ** 1.05 for rank in range(len(words))]  # Zipf-like
    rng.shuffle(words)
    return words, weights


def prose(rng: random.Random, words: list[str], weights: list[float], count: int) -> str:
    sentences = []
    remaining = count
    while remaining > 0:
        length = min(remaining, rng.randint(8, 18))
        sentence = " ".join(rng.choices(words, weights, k=length))
        sentences.append(sentence[0].upper() + sentence[1:] + ".")
        remaining -= length
    return " ".join(sentences)


def setup_django(workdir: Path) -> None:
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{workdir / 'bench.sqlite3'}")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tutor_project.settings")
    os.environ["LOG_LEVEL"] = "WARNING"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.conf import settings

    # Hashed vectors of random prose are far apart: keep every nearest hit, to time the full top 5.
    settings.EMBEDDINGS_MIN_SIMILARITY = -1.0


class HashedEngine:
    """A stand-in embeddings engine: deterministic vectors, computed in process."""

    name = "bench:hashed-bag-of-words"

    def embed(self, texts, *, tenant_id=None):
        from tests.courses.documents_support import hashed_vector

        return [hashed_vector(text) for text in texts]


def load(chunks: int, noise: int, with_vectors: bool, rng: random.Random):
    from courses.models import CourseDocument, DocumentChunk
    from tests import factories
    from tests.courses.documents_support import hashed_vector

    words, weights = vocabulary(rng)
    tenant = factories.TenantFactory(name="Bench University", slug=f"bench-{rng.randrange(10**9)}")
    course = factories.CourseFactory(tenant=tenant, code="BENCH")
    other_tenant = factories.TenantFactory(name="Bench Other", slug=f"bench-other-{rng.randrange(10**9)}")
    courses = [
        (course, chunks),
        (factories.CourseFactory(tenant=tenant, code="BENCH2"), noise // 2),
        (factories.CourseFactory(tenant=other_tenant, code="BENCH"), noise - noise // 2),
    ]
    started = time.perf_counter()
    for target, total in courses:
        per_document = 100
        for first in range(0, total, per_document):
            document = CourseDocument.objects.create(
                course=target, title=f"Notes {first // per_document}", status="ready", progress=100
            )
            rows = []
            for position in range(min(per_document, total - first)):
                heading = " ".join(rng.choices(REAL_WORDS, k=2)).title()
                text = prose(rng, words, weights, rng.randint(120, 180))
                rows.append(
                    DocumentChunk(
                        document=document, position=position, page=position // 3 + 1, heading=heading,
                        text=text, token_count=len(text) // 4,
                        embedding=[round(v, 6) for v in hashed_vector(f"{heading}\n{text}")] if with_vectors else None,
                    )
                )
            DocumentChunk.objects.bulk_create(rows)
    print(f"loaded {chunks} chunks in the course + {noise} elsewhere in {time.perf_counter() - started:.1f} s")
    return [tenant, other_tenant], course


def measure(course, queries: int, rng: random.Random) -> dict[str, list[float]]:
    from courses import retrieval
    from tests.courses.documents_support import hashed_vector

    scope = (course.pk, course.tenant_id)
    questions = [rng.choice(QUESTIONS) for _ in range(queries)]
    results: dict[str, list[float]] = {}

    def run(name: str, call) -> None:
        for question in QUESTIONS:  # warm-up: caches, plans, connection
            call(question)
        times = []
        empty = 0
        for question in questions:
            started = time.perf_counter()
            hits = call(question)
            times.append(time.perf_counter() - started)
            empty += not hits
        results[name] = times
        if empty:
            print(f"  ({name}: {empty} of {len(questions)} questions found nothing)")

    original = retrieval.embeddings_engine
    retrieval.embeddings_engine = lambda: None
    run("lexical", lambda q: retrieval.passages_search(course_id=scope[0], tenant_id=scope[1], query=q, limit=5))
    retrieval.embeddings_engine = original
    if retrieval.search_schema.vector_store_ready():
        vectors = {q: hashed_vector(q) for q in QUESTIONS}
        run("semantic", lambda q: retrieval._semantic(scope, vectors[q], 5))
        engine = HashedEngine()
        retrieval.embeddings_engine = lambda: engine
        run("hybrid", lambda q: retrieval.passages_search(course_id=scope[0], tenant_id=scope[1], query=q, limit=5))
        retrieval.embeddings_engine = original
    return results


def explain(course) -> None:
    """The plans: the GIN index for words, the HNSW index for vectors."""
    from django.db import connection

    from courses import retrieval
    from tests.courses.documents_support import hashed_vector

    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, COSTS OFF) " + retrieval._PG_LEXICAL,
                       ["loop | stop", course.pk, course.tenant_id, "ready", 20])
        lines = [row[0] for row in cursor.fetchall()]
        print("lexical plan:\n    " + "\n    ".join(lines))
        if retrieval.search_schema.vector_store_ready():
            literal = "[" + ",".join(f"{v:.6g}" for v in hashed_vector("for loop stop")) + "]"
            cursor.execute("SET hnsw.iterative_scan = relaxed_order")
            cursor.execute("EXPLAIN (ANALYZE, COSTS OFF) " + retrieval._PG_SEMANTIC,
                           [literal, course.pk, course.tenant_id, "ready", literal, 20])
            lines = [row[0] for row in cursor.fetchall()]
            print("semantic plan:", "; ".join(line.strip() for line in lines if "Index" in line or "Execution" in line))
            cursor.execute("RESET hnsw.iterative_scan")


def ingestion(pages: int, rng: random.Random, tenant) -> None:
    from django.core.files.base import ContentFile

    from courses import ingestion as ingestion_module
    from courses import retrieval
    from courses.models import CourseDocument
    from tests import factories
    from tests.courses.documents_support import pdf_bytes

    words, weights = vocabulary(rng)
    page_texts = []
    for n in range(pages):
        lines = [f"Chapter {n // 10 + 1}, page {n + 1}"]
        body = prose(rng, words, weights, 250)
        lines += [body[i : i + 90] for i in range(0, len(body), 90)]
        page_texts.append("\n".join(lines))
    raw = pdf_bytes(page_texts)
    print(f"PDF: {pages} pages, {len(raw) / 1024:.0f} KiB")
    course = factories.CourseFactory(tenant=tenant, code="INGEST")
    modes = [("without embeddings", None)]
    if retrieval.search_schema.vector_store_ready():
        modes.append(("with deterministic vectors", HashedEngine()))
    for label, engine in modes:
        document = CourseDocument.objects.create(course=course, title=f"Book {label}", status="pending")
        document.file.save("book.pdf", ContentFile(raw), save=True)
        original = ingestion_module.embeddings_engine
        ingestion_module.embeddings_engine = lambda engine=engine: engine
        started = time.perf_counter()
        outcome = ingestion_module.document_ingest(document_id=document.pk)
        elapsed = time.perf_counter() - started
        ingestion_module.embeddings_engine = original
        document.refresh_from_db()
        print(
            f"ingestion {label}: {outcome}, {document.chunks.count()} chunks, {elapsed:.2f} s, "
            f"{pages / elapsed:.0f} pages/s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--noise", type=int, default=10_000, help="chunks in other courses and tenants")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--keep", action="store_true", help="leave the rows in the database (to explore plans)")
    args = parser.parse_args()
    rng = random.Random(args.seed)

    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("DJANGO_MEDIA_ROOT", str(Path(tmp) / "media"))
        setup_django(Path(tmp))
        from django.conf import settings
        from django.db import connection

        from courses.search_schema import vector_store_ready

        database = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
        version = ""
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SHOW server_version")
                version = cursor.fetchone()[0]
                cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
                row = cursor.fetchone()
                version += f", pgvector {row[0]}" if row else ", no pgvector"
        print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
        print(f"database: {database} {version}; vectors: {'yes' if vector_store_ready() else 'no'}")
        tenants = []
        try:
            tenants, course = load(args.chunks, args.noise, vector_store_ready(), rng)
            if connection.vendor == "postgresql":
                # The steady state of a server: fresh rows vacuumed (hint bits, visibility map) and
                # analysed, as autovacuum leaves them soon after a load.
                with connection.cursor() as cursor:
                    cursor.execute("VACUUM ANALYZE courses_documentchunk")
                    cursor.execute("VACUUM ANALYZE courses_coursedocument")
            results = measure(course, args.queries, rng)
            print(f"top-5 over {args.chunks} chunks of one course ({args.noise} more elsewhere):")
            for name, times in results.items():
                print("  " + summary(name, times))
            explain(course)
            ingestion(args.pages, rng, tenants[0])
        finally:
            from courses.models import Course, Tenant

            for tenant in [] if args.keep else tenants:
                Course.objects.filter(tenant=tenant).delete()
                Tenant.objects.filter(pk=tenant.pk).delete()


if __name__ == "__main__":
    main()
