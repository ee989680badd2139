"""Retrieval on each backend: SQLite FTS5, PostgreSQL full-text without pgvector, and hybrid
(full-text + pgvector, fused by reciprocal rank) with embeddings from a local OpenAI stand-in.
The answer to a question is in the top 3 everywhere; no other course or tenant ever shows up."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.db import connection

from courses import search_schema
from courses.ingestion import document_ingest, document_ingest_text
from courses.models import CourseDocument
from courses.retrieval import fuse, passages_search, retrieval_mode
from courses.services import DEMO_NOTES_FILE
from courses.tasks import INGEST_MAX_RETRIES, document_ingest_in_process, document_ingest_task
from tests import factories
from tests.courses.documents_support import EmbeddingsStandin, pdf_bytes

pytestmark = pytest.mark.django_db

QUESTIONS = [
    ("What is recursion?", "8. Recursion"),
    ("how does a for loop know when to stop?", "5. Loops"),
    ("Why do I get a KeyError?", "7. Lists and dictionaries"),
    ("How do I read a traceback?", "10. Debugging"),
    ("what is binary search", "9. Algorithms"),
    ("what does return do in a function", "6. Functions"),
]


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def _ingested(course, content: bytes, name: str = "notes.md", title: str = "CS101 course notes") -> CourseDocument:
    document = factories.CourseDocumentFactory(course=course, title=title, status="pending", content_type="")
    document.file.save(name, ContentFile(content), save=True)
    document_ingest_text(document=document)
    return document


def _search(course, query: str, **kwargs):
    return passages_search(course_id=course.pk, tenant_id=course.tenant_id, query=query, **kwargs)


def _top3(course, question: str) -> list[str]:
    return [hit.heading for hit in _search(course, question)[:3]]


@pytest.fixture
def embeddings(settings):
    """EMBEDDINGS_ENGINE=openai against a local stand-in of /v1/embeddings."""
    with EmbeddingsStandin() as standin:
        settings.EMBEDDINGS_ENGINE = "openai"
        settings.EMBEDDINGS_BASE_URL = standin.base_url
        settings.EMBEDDINGS_API_KEY = "sk-test"
        settings.EMBEDDINGS_MIN_SIMILARITY = 0.05
        yield standin


@pytest.fixture
def pgvector(db, settings):
    """PostgreSQL with the pgvector column: skipped elsewhere, but required under REQUIRE_SERVICES=1."""
    if not search_schema.vector_store_ready():
        reason = "pgvector is not enabled in this database (PostgreSQL with the extension needed)"
        if settings.REQUIRE_SERVICES:
            pytest.fail(reason + " and REQUIRE_SERVICES=1")
        pytest.skip(reason)


def _vector_rows(document: CourseDocument) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM courses_documentchunk WHERE document_id = %s AND embedding_vector IS NOT NULL",
            [document.pk],
        )
        return cursor.fetchone()[0]


# --- Lexical, whichever database runs the suite ---------------------------------------------------


@pytest.mark.parametrize(("question", "heading"), QUESTIONS)
def test_lexical_search_finds_the_answer_in_the_top_3(course, question, heading):
    _ingested(course, DEMO_NOTES_FILE.read_bytes())

    assert heading in _top3(course, question)


def test_a_pdf_passage_is_found_with_its_page(course):
    document = _ingested(
        course,
        pdf_bytes(["Loops\nA for loop stops when the range is exhausted.", "Recursion\nA base case ends the calls."]),
        name="week1.pdf",
        title="Week 1 slides",
    )

    hit = _search(course, "what ends a recursion? the base case")[0]

    assert (hit.document, hit.document_id, hit.page) == ("Week 1 slides", document.pk, 2)


def test_the_lexical_index_follows_edits_and_deletes(course):
    document = _ingested(course, b"## Loops\n\nA for loop stops at the end.")
    chunk = document.chunks.get()

    chunk.text = "A quaternion extends complex numbers."
    chunk.save()
    assert [hit.chunk_id for hit in _search(course, "quaternion")] == [chunk.pk]
    assert _search(course, "stops end") == []

    chunk.delete()
    assert _search(course, "quaternion") == []


def test_without_an_engine_the_mode_is_lexical(settings):
    settings.EMBEDDINGS_ENGINE = ""
    assert retrieval_mode() == "lexical"


def test_fusion_rewards_passages_both_rankings_agree_on():
    from courses.retrieval import SearchHit

    def hit(chunk_id: int) -> SearchHit:
        return SearchHit(chunk_id, 1, "Notes", None, "", f"chunk {chunk_id}", 1.0)

    fused = fuse([hit(1), hit(2), hit(3)], [hit(3), hit(4), hit(2)], limit=3)

    assert [h.chunk_id for h in fused] == [3, 2, 1]
    assert (fused[0].lexical_rank, fused[0].semantic_rank, fused[0].found_by) == (3, 1, "words and meaning")
    assert (fused[2].lexical_rank, fused[2].semantic_rank, fused[2].found_by) == (1, None, "words")


# --- SQLite: the FTS5 table survives a table rebuild ----------------------------------------------


def test_sqlite_fts_triggers_come_back_after_a_table_rebuild(course):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only: PostgreSQL's generated column needs no triggers")
    _ingested(course, b"## Loops\n\nA for loop stops at the end.")
    with connection.cursor() as cursor:  # what SQLite's schema editor does to an altered table
        for name in ("insert", "delete", "update"):
            cursor.execute(f"DROP TRIGGER {search_schema.FTS_TABLE}_{name}")
        cursor.execute(f"DELETE FROM {search_schema.FTS_TABLE}")  # noqa: S608

    search_schema.search_indexes_ensure(connection)  # the post_migrate hook

    assert _top3(course, "for loop")
    _ingested(course, b"## Quaternions\n\nA quaternion extends complex numbers.", title="Extra")
    assert _top3(course, "quaternion") == ["Quaternions"]


def test_the_vector_migration_is_a_no_op_without_pgvector(monkeypatch):
    if connection.vendor == "postgresql":
        monkeypatch.setattr(search_schema, "vector_extension_available", lambda connection: False)
    assert search_schema.vector_index_install(connection) is False


# --- PostgreSQL without pgvector: an engine is configured, search stays lexical ------------------


@pytest.mark.requires_postgres
@pytest.mark.parametrize(("question", "heading"), QUESTIONS[:3])
def test_postgres_without_pgvector_is_lexical_and_calls_no_engine(
    course, embeddings, monkeypatch, question, heading
):
    monkeypatch.setattr(search_schema, "vector_store_ready", lambda using="default": False)
    document = _ingested(course, DEMO_NOTES_FILE.read_bytes())

    assert heading in _top3(course, question)
    assert retrieval_mode() == "lexical"
    assert embeddings.requests == []
    assert not document.chunks.filter(embedding__isnull=False).exists()


# --- PostgreSQL with pgvector: hybrid ---------------------------------------------------------------


@pytest.mark.requires_postgres
@pytest.mark.parametrize(("question", "heading"), QUESTIONS)
def test_hybrid_search_finds_the_answer_in_the_top_3(course, pgvector, embeddings, question, heading):
    document = _ingested(course, DEMO_NOTES_FILE.read_bytes())
    assert _vector_rows(document) == document.chunks.count() > 0

    hits = _search(course, question)

    assert heading in [hit.heading for hit in hits[:3]]
    assert retrieval_mode() == "hybrid"
    assert any(hit.semantic_rank for hit in hits)
    assert embeddings.requests[0]["dimensions"] == search_schema.EMBEDDING_DIMENSIONS


@pytest.mark.requires_postgres
def test_hybrid_never_returns_another_course_or_tenant(course, other_tenant, pgvector, embeddings):
    notes = DEMO_NOTES_FILE.read_bytes()
    ours = _ingested(course, notes)
    # The very same text elsewhere: identical vectors, identical words.
    _ingested(factories.CourseFactory(tenant=course.tenant, code="CS102"), notes)
    _ingested(factories.CourseFactory(tenant=other_tenant, code="CS101"), notes)

    for question, _ in QUESTIONS:
        hits = _search(course, question, limit=20)
        assert hits and {hit.document_id for hit in hits} == {ours.pk}
    assert passages_search(course_id=course.pk, tenant_id=other_tenant.pk, query="recursion") == []


@pytest.mark.requires_postgres
def test_a_semantic_follow_up_uses_the_history(course, pgvector, embeddings):
    _ingested(course, DEMO_NOTES_FILE.read_bytes())

    hits = _search(course, "is there anything easier?", history=["How does recursion work?"])

    assert hits[0].heading == "8. Recursion"
    assert "recursion" in embeddings.requests[-1]["input"][0].lower()


@pytest.mark.requires_postgres
def test_an_embeddings_outage_at_question_time_falls_back_to_lexical(course, pgvector, embeddings):
    _ingested(course, DEMO_NOTES_FILE.read_bytes())
    embeddings.fail_next(1, status=503)

    hits = _search(course, "What is recursion?")

    assert "8. Recursion" in [hit.heading for hit in hits[:3]]
    assert all(hit.semantic_rank is None for hit in hits)


@pytest.mark.requires_postgres
def test_an_embeddings_outage_at_ingestion_is_retried_then_degrades_to_lexical(course, pgvector, embeddings):
    waits: list[float] = []
    document = factories.CourseDocumentFactory(course=course, status="pending", content_type="")
    document.file.save("notes.md", ContentFile(DEMO_NOTES_FILE.read_bytes()), save=True)
    embeddings.fail_next(100, status=503)

    # As the embedded default runs it (no broker): the task's retries, in this thread.
    assert document_ingest_in_process(document.pk, document.revision, sleep=waits.append) == "ready"

    document.refresh_from_db()
    assert document.status == "ready" and document.chunks.exists()
    assert _vector_rows(document) == 0
    assert len(embeddings.requests) == 6  # the first try and 5 retries, each stopped at its first batch
    assert waits == sorted(waits) and len(waits) == INGEST_MAX_RETRIES  # exponential backoff
    assert "8. Recursion" in _top3(course, "What is recursion?")


@pytest.mark.requires_postgres
def test_one_failed_embeddings_call_is_retried_and_the_vectors_arrive(course, pgvector, embeddings):
    waits: list[float] = []
    document = factories.CourseDocumentFactory(course=course, status="pending", content_type="")
    document.file.save("notes.md", ContentFile(DEMO_NOTES_FILE.read_bytes()), save=True)
    embeddings.fail_next(1, status=429)

    # As the embedded default runs it (no broker): the task's retries, in this thread.
    assert document_ingest_in_process(document.pk, document.revision, sleep=waits.append) == "ready"

    assert _vector_rows(document) == document.chunks.count() > 0


@pytest.mark.requires_postgres
def test_reingesting_replaces_the_vectors_too(course, pgvector, embeddings):
    document = _ingested(course, b"## Loops\n\nA for loop stops at the end of its range.")
    document.file.save("notes.md", ContentFile(b"## Recursion\n\nA function that calls itself."), save=True)
    document.revision += 1
    document.save()

    assert document_ingest(document_id=document.pk, force=True) == "ready"

    assert _vector_rows(document) == 1
    assert [hit.heading for hit in _search(course, "function calls itself")] == ["Recursion"]


def test_the_celery_task_is_acked_late_and_retries_transient_errors():
    from django.db import OperationalError

    from courses.ingestion import IngestionDeferred

    assert document_ingest_task.acks_late is True
    assert set(document_ingest_task.autoretry_for) == {IngestionDeferred, OperationalError}
    assert document_ingest_task.max_retries == INGEST_MAX_RETRIES
