"""Finding the passages of a course's material that answer a question.

Lexical search needs no model: PostgreSQL full-text search over a generated tsvector column (GIN
index), or SQLite FTS5 (BM25) in the embedded default (courses/search_schema.py). When an
embeddings engine is configured and PostgreSQL has pgvector, a semantic search (HNSW, cosine)
runs too, and the two rankings are fused by reciprocal rank fusion. Everything is scoped to the
READY documents of one course of one tenant, in the SQL itself.

`terms()`, `stem()` and `FOLLOW_UP_TERMS` are the light English text tools the offline tutor and
the guardrail share with this module.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connection, transaction

from courses import search_schema
from courses.embeddings import EmbeddingsError, embeddings_engine
from courses.models import CourseDocument

logger = logging.getLogger(__name__)

# A term in a chunk's heading path weighs this much more than one in its text (SQLite bm25()
# column weight; on PostgreSQL the heading is tsvector weight A, the text B).
HEADING_WEIGHT = 3.0
# Reciprocal rank fusion: score = sum of 1 / (RRF_K + rank) over the rankings a chunk is in.
RRF_K = 60
# Each ranking contributes this many candidates (at least) to the fusion.
FUSION_DEPTH = 20
# Follow-ups ("why?", "is there anything easier?"): the latest this many earlier messages give
# the subject.
HISTORY_LINES = 2
# A query longer than this many words is cut (a pasted essay must not make a huge query).
MAX_QUERY_WORDS = 32

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
    """A passage found for a query: the chunk, its document's title, where it sits, its score
    (higher is better), and its rank (1 = best) in the lexical and semantic rankings it came from."""

    chunk_id: int
    document_id: int
    document: str
    page: int | None
    heading: str
    text: str
    score: float
    lexical_rank: int | None = None
    semantic_rank: int | None = None

    @property
    def found_by(self) -> str:
        """"words", "meaning" or "words and meaning": what the professor's search box shows."""
        if self.lexical_rank and self.semantic_rank:
            return "words and meaning"
        return "meaning" if self.semantic_rank else "words"


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



# Decimal numbers stay whole ("0.1"): PostgreSQL's parser indexes them as one token, and SQLite
# reads a quoted "0.1" as the phrase 0 1, which is how FTS5 indexed it.
_QUERY_WORD = re.compile(r"\d+(?:\.\d+)+|[a-z0-9]+(?:'[a-z]+)?")


def query_words(text: str) -> list[str]:
    """The words of a text a full-text index can look up: lowercase letters, digits and decimal
    numbers, no stop words, each once, at most MAX_QUERY_WORDS. The database's stemmer stems them."""
    seen: dict[str, None] = {}
    for word in _QUERY_WORD.findall(text.lower().replace("\u2019", "'")):
        word = word.removesuffix("'s").replace("'", "")
        if (word.isdigit() or (len(word) > 1 and word not in STOP_WORDS)) and word not in seen:
            seen[word] = None
    return list(seen)[:MAX_QUERY_WORDS]


def retrieval_mode() -> str:
    """"hybrid" when semantic search can run next to lexical search here, else "lexical"."""
    return "hybrid" if embeddings_engine() is not None and search_schema.vector_store_ready() else "lexical"


def passages_search(
    *, course_id: int, tenant_id: int, query: str, limit: int = 4, history: list[str] | None = None
) -> list[SearchHit]:
    """The `limit` best passages of the course's ready material for `query`, best first.

    `history` holds the student's earlier messages, oldest first: a follow-up that names nothing
    the material knows ("why?", "is there anything easier?") is searched with the subject of the
    latest of them. Only chunks of READY documents of this course and tenant are searched. [] for
    an empty query or a course without material. Lexical, or hybrid (lexical + semantic, fused by
    reciprocal rank) where an embeddings engine and pgvector are available.
    """
    if not query.strip() or limit <= 0:
        return []
    scope = (course_id, tenant_id)
    depth = max(limit, FUSION_DEPTH)
    words = [word for word in query_words(query) if stem(word) not in FOLLOW_UP_TERMS]
    lexical = _lexical(scope, words, depth) if words else []
    semantic_query = query
    if not lexical and history:
        latest = [line for line in reversed(history) if line.strip()][:HISTORY_LINES]
        history_words = [word for line in latest for word in query_words(line)]
        words = list(dict.fromkeys([*words, *history_words]))[:MAX_QUERY_WORDS]
        lexical = _lexical(scope, words, depth) if words else []
        semantic_query = "\n".join([*reversed(latest), query])
    if not words and not lexical:
        return []  # nothing to go on: semantic search alone would return "nearest" noise

    engine = embeddings_engine()
    if engine is None or not search_schema.vector_store_ready():
        return lexical[:limit]
    try:
        vector = engine.embed([semantic_query], tenant_id=tenant_id)[0]
    except EmbeddingsError as exc:
        logger.warning("semantic search skipped (lexical only): %s", exc)
        return lexical[:limit]
    semantic = _semantic(scope, vector, depth)
    return fuse(lexical, semantic, limit)


def fuse(lexical: Sequence[SearchHit], semantic: Sequence[SearchHit], limit: int) -> list[SearchHit]:
    """Reciprocal rank fusion of the two rankings; ties keep the lexical order."""
    fused: dict[int, SearchHit] = {}
    scores: dict[int, float] = {}
    for rank, hit in enumerate(lexical, start=1):
        fused[hit.chunk_id] = replace(hit, lexical_rank=rank, semantic_rank=None)
        scores[hit.chunk_id] = 1.0 / (RRF_K + rank)
    for rank, hit in enumerate(semantic, start=1):
        known = fused.get(hit.chunk_id)
        fused[hit.chunk_id] = replace(known or hit, semantic_rank=rank, lexical_rank=known.lexical_rank if known else None)
        scores[hit.chunk_id] = scores.get(hit.chunk_id, 0.0) + 1.0 / (RRF_K + rank)
    order = sorted(fused, key=lambda chunk_id: -scores[chunk_id])  # stable: lexical first on ties
    return [replace(fused[chunk_id], score=round(scores[chunk_id], 6)) for chunk_id in order[:limit]]


# --- The databases --------------------------------------------------------------------------------

_COLUMNS = "c.id, c.document_id, d.title, c.page, c.heading, c.text"
_SCOPE = (
    "JOIN courses_coursedocument d ON d.id = c.document_id "
    "JOIN courses_course co ON co.id = d.course_id "
    "WHERE d.course_id = %s AND co.tenant_id = %s AND d.status = %s"
)

_PG_LEXICAL = f"""
    SELECT {_COLUMNS}, ts_rank(c.search_vector, q.query, 1) AS score
    FROM courses_documentchunk c
    CROSS JOIN to_tsquery('{search_schema.PG_TEXT_SEARCH_CONFIG}', %s) AS q(query)
    {_SCOPE} AND c.search_vector @@ q.query
    ORDER BY score DESC, c.id
    LIMIT %s
"""  # noqa: S608  (constants only; every value is a parameter)

_SQLITE_LEXICAL = f"""
    SELECT {_COLUMNS}, -bm25({search_schema.FTS_TABLE}, {HEADING_WEIGHT}, 1.0) AS score
    FROM {search_schema.FTS_TABLE}
    JOIN courses_documentchunk c ON c.id = {search_schema.FTS_TABLE}.rowid
    {_SCOPE} AND {search_schema.FTS_TABLE} MATCH %s
    ORDER BY score DESC, c.id
    LIMIT %s
"""  # noqa: S608

_PG_SEMANTIC = f"""
    SELECT {_COLUMNS}, 1 - (c.embedding_vector <=> %s::vector) AS score
    FROM courses_documentchunk c
    {_SCOPE} AND c.embedding_vector IS NOT NULL
    ORDER BY c.embedding_vector <=> %s::vector
    LIMIT %s
"""  # noqa: S608


def _hits(rows: Sequence[tuple]) -> list[SearchHit]:
    return [
        SearchHit(
            chunk_id=chunk_id,
            document_id=document_id,
            document=title,
            page=page,
            heading=heading,
            text=text,
            score=round(float(score), 4),
        )
        for chunk_id, document_id, title, page, heading, text, score in rows
    ]


def _lexical(scope: tuple[int, int], words: list[str], limit: int) -> list[SearchHit]:
    """Chunks with any of the words, best first (one query)."""
    course_id, tenant_id = scope
    ready = CourseDocument.Status.READY
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Words are [a-z0-9.] only (query_words), so they are safe tsquery operands.
            cursor.execute(_PG_LEXICAL, [" | ".join(words), course_id, tenant_id, ready, limit])
        elif connection.vendor == "sqlite":
            match = " OR ".join(f'"{word}"' for word in words)
            cursor.execute(_SQLITE_LEXICAL, [course_id, tenant_id, ready, match, limit])
        else:
            raise ImproperlyConfigured(f"AI Professor runs on PostgreSQL or SQLite, not {connection.vendor}.")
        return _hits(cursor.fetchall())


def _semantic(scope: tuple[int, int], vector: list[float], limit: int) -> list[SearchHit]:
    """Nearest chunks by cosine similarity above EMBEDDINGS_MIN_SIMILARITY (pgvector, HNSW)."""
    course_id, tenant_id = scope
    literal = "[" + ",".join(f"{value:.6g}" for value in vector) + "]"
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            # pgvector >= 0.8: keep scanning the HNSW graph until `limit` rows pass the course
            # filter (an index scan stops after ef_search candidates otherwise). SET LOCAL ends
            # with this transaction; an older pgvector refuses it and scans as before.
            try:
                with transaction.atomic():
                    cursor.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            except DatabaseError:
                pass
            cursor.execute(
                _PG_SEMANTIC,
                [literal, course_id, tenant_id, CourseDocument.Status.READY, literal, limit],
            )
            rows = cursor.fetchall()
    except DatabaseError as exc:
        logger.warning("semantic search failed (lexical only): %s", exc)
        return []
    minimum = float(settings.EMBEDDINGS_MIN_SIMILARITY)
    # relaxed_order may return rows slightly out of order: sort them again.
    return sorted((hit for hit in _hits(rows) if hit.score >= minimum), key=lambda hit: -hit.score)
