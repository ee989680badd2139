"""Finding the passages of a course's material that answer a question, with no model at all.

BM25 over the course's chunks, computed in Python from an index kept in this process and rebuilt
only when the course's material changes. Lexical search is what the embedded default can always
do; PostgreSQL full-text / SQLite FTS5 and pgvector (hybrid) replace the internals later behind
the same `passages_search` signature.
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from django.db.models import Count, Max

from courses.models import CourseDocument, DocumentChunk

# BM25 parameters: the usual values; b < 1 so long chunks are not punished too hard.
BM25_K1 = 1.2
BM25_B = 0.75
# A term in a chunk's heading path counts as this many occurrences in its text.
HEADING_WEIGHT = 3.0
# Follow-ups ("why?", "is there anything easier?"): terms of the latest earlier messages join the
# query at these weights, newest first.
HISTORY_WEIGHTS = (0.5, 0.25)
# Indexes of this many courses stay in memory (least recently used dropped first).
INDEX_CACHE_SIZE = 64

_STOP_WORDS_TEXT = """
    a about above after again against all also am an any anything anyone are aren't as at be
    because been before being below between both but by can can't cannot could couldn't did
    didn't do does doesn't doing don't down during each explain explained few from further get
    gets got had hadn't has hasn't have haven't having he her here hers herself him himself his
    how i i'd i'll i'm i've in into is isn't it it's its itself just know let let's like me mean
    means more most much my myself need no nor now of off ok okay on once only other ought our
    ours ourselves out over own please really same say she should shouldn't so some something
    such tell than thank thanks that that's the their theirs them themselves then there there's
    these they they're this those through to too under understand until up us very want was
    wasn't way we we're were weren't what what's when where which who whom whose why will with
    won't would wouldn't yes you you'd you'll you're you've your yours yourself yourselves
"""
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())
# Python's keywords (for, while, if, return, not, and, or...) are not stop words here: in a
# programming course "for" and "while" are exactly what a student asks about.

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_DOUBLED_END = re.compile(r"([bdgmnprt])\1$")


@dataclass(frozen=True, slots=True)
class SearchHit:
    """A passage found for a query: the chunk, its document's title, and the BM25 score."""

    chunk_id: int
    document_id: int
    document: str
    page: int | None
    heading: str
    text: str
    score: float


def stem(word: str) -> str:
    """A light English stemmer: plurals (-s, -es, -ies), -ing, -ed, -ion/-ive and a final -e, so
    "loops", "looping" and "looped" meet "loop", and "recursion" meets "recursive"."""
    if word.isdigit():
        return word
    if len(word) > 3:
        if word.endswith("ies") and len(word) > 4:
            word = word[:-3] + "y"
        elif word.endswith("es") and word[:-2].endswith(("s", "x", "z", "ch", "sh")):
            word = word[:-2]
        elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
            word = word[:-1]
        if len(word) > 6 and word.endswith(("ion", "ive")):
            return word[:-3]  # "recursion" and "recursive", "iteration" and "iterative"
        for suffix in ("ing", "ed"):
            root = word[: -len(suffix)]
            # The root must keep a vowel, so "string" and "need" stay whole.
            if word.endswith(suffix) and len(root) >= 2 and re.search(r"[aeiouy]", root):
                word = _DOUBLED_END.sub(r"\1", root) if len(root) > 3 else root
                break
    # "use", "uses", "used" and "using" all become "us".
    if word.endswith("e") and len(word) >= 3:
        word = word[:-1]
    return word


def terms(text: str) -> list[str]:
    """Search terms of a text: lowercased words without stop words, stemmed."""
    words = [word.removesuffix("'s") for word in _WORD.findall(text.lower().replace("\u2019", "'"))]
    return [stem(word) for word in words if word.isdigit() or (len(word) > 1 and word not in STOP_WORDS)]


# Words that ask for more of the same rather than name a subject.
_FOLLOW_UP_WORDS = (
    "again another confused detail easier example give harder instead lost more other show simpler stuck sure"
)
FOLLOW_UP_TERMS = frozenset(stem(word) for word in _FOLLOW_UP_WORDS.split())


@dataclass(slots=True)
class _Index:
    signature: tuple
    chunks: list[tuple[int, int, str, int | None, str, str]]  # chunk, document, title, page, heading, text
    postings: dict[str, list[tuple[int, float]]]  # term -> [(chunk index, weighted frequency)]
    lengths: list[float]
    average_length: float


_cache: OrderedDict[tuple[int, int], _Index] = OrderedDict()
_cache_lock = threading.Lock()


def _searchable_chunks(*, course_id: int, tenant_id: int):
    return DocumentChunk.objects.filter(
        document__course_id=course_id,
        document__course__tenant_id=tenant_id,
        document__status=CourseDocument.Status.READY,
    )


def _index_for(*, course_id: int, tenant_id: int) -> _Index | None:
    """The course's index, rebuilt when a chunk or a ready document changed (one aggregate query
    per question when nothing did)."""
    chunks = _searchable_chunks(course_id=course_id, tenant_id=tenant_id)
    state = chunks.aggregate(count=Count("id"), last_id=Max("id"), updated=Max("document__updated_at"))
    if not state["count"]:
        return None
    signature = (state["count"], state["last_id"], state["updated"])
    key = (course_id, tenant_id)
    with _cache_lock:
        index = _cache.get(key)
        if index is not None and index.signature == signature:
            _cache.move_to_end(key)
            return index
    rows = chunks.order_by("document_id", "position").values_list(
        "id", "document_id", "document__title", "page", "heading", "text"
    )
    index = _build_index(signature, list(rows))
    with _cache_lock:
        _cache[key] = index
        _cache.move_to_end(key)
        while len(_cache) > INDEX_CACHE_SIZE:
            _cache.popitem(last=False)
    return index


def _build_index(signature: tuple, rows: list[tuple[int, int, str, int | None, str, str]]) -> _Index:
    postings: dict[str, list[tuple[int, float]]] = {}
    lengths: list[float] = []
    for position, (_, _, _, _, heading, text) in enumerate(rows):
        body = Counter(terms(text))
        head = Counter(terms(heading))
        weighted = {term: body[term] + HEADING_WEIGHT * head[term] for term in body.keys() | head.keys()}
        for term, frequency in weighted.items():
            postings.setdefault(term, []).append((position, frequency))
        lengths.append(sum(body.values()) + HEADING_WEIGHT * sum(head.values()))
    average = sum(lengths) / len(lengths) if lengths else 0.0
    return _Index(signature, rows, postings, lengths, average or 1.0)


def _query_weights(
    query: str, history: Sequence[str] | None, vocabulary: Mapping[str, object]
) -> dict[str, float]:
    """The query's terms at weight 1; for a follow-up, also the latest history lines' terms."""
    weights = dict.fromkeys(terms(query), 1.0)
    # A follow-up names nothing the material knows ("why?", "is there anything easier?", "can
    # you give an example?"): what it is about is in the messages before it.
    subject = [term for term in weights if term in vocabulary and term not in FOLLOW_UP_TERMS]
    if not subject and history:
        latest = [line for line in reversed(history) if line.strip()]
        for line, weight in zip(latest, HISTORY_WEIGHTS, strict=False):
            for term in terms(line):
                weights[term] = max(weights.get(term, 0.0), weight)
    return weights


def passages_search(
    *, course_id: int, tenant_id: int, query: str, limit: int = 4, history: list[str] | None = None
) -> list[SearchHit]:
    """The `limit` best passages of the course's ready material for `query`, best first.

    `history` holds the student's earlier messages, oldest first: a short follow-up borrows their
    terms (at a lower weight) to know what "it" is. Only chunks of READY documents of this course
    and tenant are searched. [] for an empty query or a course without material.

    The signature is stable: the BM25-in-Python internals will be replaced by PostgreSQL
    full-text / SQLite FTS5 plus pgvector without changing callers.
    """
    if not query.strip() or limit <= 0:
        return []
    index = _index_for(course_id=course_id, tenant_id=tenant_id)
    if index is None:
        return []
    weights = _query_weights(query, history, index.postings)
    total = len(index.chunks)
    scores: dict[int, float] = {}
    for term, weight in weights.items():
        postings = index.postings.get(term)
        if not postings:
            continue
        idf = math.log(1 + (total - len(postings) + 0.5) / (len(postings) + 0.5))
        for position, frequency in postings:
            norm = BM25_K1 * (1 - BM25_B + BM25_B * index.lengths[position] / index.average_length)
            scores[position] = scores.get(position, 0.0) + weight * idf * frequency * (BM25_K1 + 1) / (
                frequency + norm
            )
    best = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:limit]
    return [
        SearchHit(
            chunk_id=chunk_id,
            document_id=document_id,
            document=title,
            page=page,
            heading=heading,
            text=text,
            score=round(score, 4),
        )
        for position, score in best
        for chunk_id, document_id, title, page, heading, text in [index.chunks[position]]
    ]
