"""`passages_search`: BM25 over the demo course notes, scoped to one course of one tenant."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile

from courses.ingestion import document_ingest_text
from courses.models import CourseDocument
from courses.retrieval import SearchHit, passages_search, stem, terms
from courses.services import DEMO_NOTES_FILE
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def _ingested(course, content: bytes, title: str = "CS101 course notes") -> CourseDocument:
    document = factories.CourseDocumentFactory(course=course, title=title, status="pending")
    document.file.save("notes.md", ContentFile(content), save=True)
    document_ingest_text(document=document)
    document.refresh_from_db()
    return document


@pytest.fixture
def notes(course) -> CourseDocument:
    return _ingested(course, DEMO_NOTES_FILE.read_bytes())


def _search(course, query: str, **kwargs) -> list[SearchHit]:
    return passages_search(course_id=course.pk, tenant_id=course.tenant_id, query=query, **kwargs)


def _headings(hits: list[SearchHit], top: int = 3) -> list[str]:
    return [hit.heading for hit in hits[:top]]


def test_a_for_loop_question_finds_the_loops_section(course, notes):
    hits = _search(course, "how does a for loop know when to stop?")

    assert "5. Loops" in _headings(hits)
    loops = next(hit for hit in hits if hit.heading == "5. Loops")
    assert "range(start, stop, step)" in loops.text
    assert (loops.document, loops.document_id, loops.page) == ("CS101 course notes", notes.pk, None)
    assert loops.chunk_id in set(notes.chunks.values_list("id", flat=True))
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)


@pytest.mark.parametrize(
    ("question", "heading"),
    [
        ("What is recursion?", "8. Recursion"),
        ("what is a base case?", "8. Recursion"),
        ("Why do I get a KeyError?", "7. Lists and dictionaries"),
        ("What's the difference between a list and a dictionary?", "7. Lists and dictionaries"),
        ("How do I read a traceback?", "10. Debugging"),
        ("why is 0.1 + 0.2 not 0.3?", "2. Variables and types"),
        ("How do I convert a string to a number?", "2. Variables and types"),
        ("what is an infinite loop", "5. Loops"),
        ("what is binary search", "9. Algorithms"),
        ("what does return do in a function", "6. Functions"),
        ("when does elif run in a conditional", "4. Conditionals"),
        ("what is floor division with //", "3. Input, output and operators"),
    ],
)
def test_questions_across_the_notes_find_their_section(course, notes, question, heading):
    assert heading in _headings(_search(course, question)), _headings(_search(course, question), 4)


def test_follow_ups_are_resolved_with_the_history(course, notes):
    history = ["How does recursion work?", "I still don't get it"]

    assert _search(course, "is there anything easier?") == []  # nothing to go on by itself
    hits = _search(course, "is there anything easier?", history=history)
    assert _headings(hits, 1) == ["8. Recursion"]
    assert _headings(_search(course, "why?", history=["what is an infinite loop?"]), 1) == ["5. Loops"]


def test_a_question_with_its_own_subject_ignores_the_history(course, notes):
    hits = _search(course, "what is a dictionary?", history=["how does recursion work?"])

    assert "8. Recursion" not in _headings(hits)


def test_empty_queries_and_unknown_words_find_nothing(course, notes):
    assert _search(course, "") == []
    assert _search(course, "   ") == []
    assert _search(course, "zebra quasar") == []


def test_a_course_without_material_finds_nothing(course):
    assert _search(course, "what is a loop?") == []


def test_other_courses_and_tenants_are_never_searched(course, notes, other_tenant):
    same_tenant = factories.CourseFactory(tenant=course.tenant, code="MATH1")
    _ingested(same_tenant, b"## Loops\n\nA loop in a proof by induction, for loop invariants.")
    foreign = factories.CourseFactory(tenant=other_tenant, code="CS101")
    _ingested(foreign, b"## Loops\n\nA for loop stops when range is exhausted. Loop loop loop.")

    hits = _search(course, "for loop stop", limit=20)

    assert hits and {hit.document_id for hit in hits} == {notes.pk}
    # The right course id with another tenant's id finds nothing either.
    assert passages_search(course_id=course.pk, tenant_id=other_tenant.pk, query="for loop") == []


@pytest.mark.parametrize("status", ["pending", "processing", "failed"])
def test_documents_that_are_not_ready_are_excluded(course, notes, status):
    draft = _ingested(
        course, b"## Loops\n\nA for loop stops at the end of its range. Loop loop.", title="Draft"
    )
    assert draft.pk in {hit.document_id for hit in _search(course, "for loop stop", limit=20)}

    draft.status = status
    draft.save()

    assert draft.pk not in {hit.document_id for hit in _search(course, "for loop stop", limit=20)}


def test_the_index_follows_changes_to_the_material(course, notes):
    assert _search(course, "quaternion") == []

    extra = _ingested(course, b"## Quaternions\n\nA quaternion extends complex numbers.", title="Extra")
    assert [hit.document_id for hit in _search(course, "quaternion")] == [extra.pk]

    extra.delete()
    assert _search(course, "quaternion") == []


def test_limit_caps_the_hits(course, notes):
    assert len(_search(course, "loop function list", limit=2)) == 2
    assert len(_search(course, "loop function list")) == 4


def test_a_second_search_costs_one_query(course, notes, django_assert_num_queries):
    _search(course, "what is recursion?")

    with django_assert_num_queries(1):
        _search(course, "what is a list?")


def test_terms_are_lowercased_stemmed_and_without_stop_words():
    assert terms("How do the Loops stop?") == ["loop", "stop"]
    assert [stem(word) for word in ["dictionaries", "indexes", "looping", "stopped", "strings"]] == [
        "dictionary",
        "index",
        "loop",
        "stop",
        "string",
    ]
    assert {stem(word) for word in ["use", "uses", "used", "using"]} == {"us"}
    assert terms("a for loop") == ["for", "loop"]  # Python keywords are not stop words here
    assert terms("a while loop") == [stem("while"), "loop"]
