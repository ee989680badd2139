"""The search indexes of `DocumentChunk` that live outside the Django model, per database.

- PostgreSQL: `search_vector`, a generated tsvector column (heading weighted A, text B) with a GIN
  index; always present. `embedding_vector vector(384)`, generated from the JSON `embedding`, with
  an HNSW index (cosine) when the pgvector extension can be enabled; without it the column does
  not exist and retrieval is lexical only.
- SQLite: `courses_documentchunk_fts`, an FTS5 table over heading and text (porter stemmer) that
  reads its content from the chunk table and is kept in sync by triggers.

Migrations 0004/0005 call the `*_install` functions; they are no-ops on the other database. The
post_migrate hook runs them again because SQLite's schema editor rebuilds a table it alters
(copy, drop, rename), which drops its triggers: a later migration of `DocumentChunk` would
otherwise leave the FTS table silently stale.
"""

from __future__ import annotations

import logging

from django.db import DatabaseError, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

logger = logging.getLogger(__name__)

CHUNK_TABLE = "courses_documentchunk"
FTS_TABLE = "courses_documentchunk_fts"
# Every embeddings engine is asked for vectors of this size (MiniLM's native size; OpenAI's
# text-embedding-3 models shorten theirs with `dimensions`). Changing it needs a migration.
EMBEDDING_DIMENSIONS = 384
# The text search configuration of the generated column; SQLite's porter stemmer is English too.
PG_TEXT_SEARCH_CONFIG = "english"

_PG_LEXICAL = [
    f"""
    ALTER TABLE {CHUNK_TABLE} ADD COLUMN IF NOT EXISTS search_vector tsvector
    GENERATED ALWAYS AS (
        setweight(to_tsvector('{PG_TEXT_SEARCH_CONFIG}', coalesce(heading, '')), 'A')
        || setweight(to_tsvector('{PG_TEXT_SEARCH_CONFIG}', coalesce(text, '')), 'B')
    ) STORED
    """,
    f"CREATE INDEX IF NOT EXISTS chunk_search_vector_gin ON {CHUNK_TABLE} USING gin (search_vector)",
]

_SQLITE_FTS_TABLE = (
    f"CREATE VIRTUAL TABLE IF NOT EXISTS {FTS_TABLE} USING fts5("
    f"heading, text, content='{CHUNK_TABLE}', content_rowid='id', "
    "tokenize='porter unicode61 remove_diacritics 2')"
)
# Table names are constants of ours, never input: the f-strings below are not an injection vector.
_SQLITE_TRIGGERS = {
    f"{FTS_TABLE}_insert": f"""
        CREATE TRIGGER IF NOT EXISTS {FTS_TABLE}_insert AFTER INSERT ON {CHUNK_TABLE} BEGIN
            INSERT INTO {FTS_TABLE}(rowid, heading, text) VALUES (new.id, new.heading, new.text);
        END""",  # noqa: S608
    f"{FTS_TABLE}_delete": f"""
        CREATE TRIGGER IF NOT EXISTS {FTS_TABLE}_delete AFTER DELETE ON {CHUNK_TABLE} BEGIN
            INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, heading, text)
            VALUES ('delete', old.id, old.heading, old.text);
        END""",  # noqa: S608
    f"{FTS_TABLE}_update": f"""
        CREATE TRIGGER IF NOT EXISTS {FTS_TABLE}_update AFTER UPDATE OF heading, text ON {CHUNK_TABLE} BEGIN
            INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, heading, text)
            VALUES ('delete', old.id, old.heading, old.text);
            INSERT INTO {FTS_TABLE}(rowid, heading, text) VALUES (new.id, new.heading, new.text);
        END""",  # noqa: S608
}


def lexical_index_install(connection: BaseDatabaseWrapper) -> None:
    """Create the lexical index of the chunks for this database (idempotent)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            for statement in _PG_LEXICAL:
                cursor.execute(statement)
        elif connection.vendor == "sqlite":
            cursor.execute(_SQLITE_FTS_TABLE)
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s", [CHUNK_TABLE]
            )
            present = {row[0] for row in cursor.fetchall()}
            for statement in _SQLITE_TRIGGERS.values():
                cursor.execute(statement)
            if present != set(_SQLITE_TRIGGERS):
                # Missing triggers mean rows changed unseen (or the table is new): reindex all.
                cursor.execute(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('rebuild')")  # noqa: S608


def lexical_index_uninstall(connection: BaseDatabaseWrapper) -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("DROP INDEX IF EXISTS chunk_search_vector_gin")
            cursor.execute(f"ALTER TABLE {CHUNK_TABLE} DROP COLUMN IF EXISTS search_vector")
        elif connection.vendor == "sqlite":
            for name in _SQLITE_TRIGGERS:
                cursor.execute(f"DROP TRIGGER IF EXISTS {name}")
            cursor.execute(f"DROP TABLE IF EXISTS {FTS_TABLE}")


def vector_extension_available(connection: BaseDatabaseWrapper) -> bool:
    """Whether the server has pgvector installed (it may not be enabled in this database yet)."""
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
        return cursor.fetchone() is not None


def vector_index_install(connection: BaseDatabaseWrapper) -> bool:
    """Enable pgvector and add the HNSW-indexed vector column; False (and a log line) where the
    extension is missing or may not be enabled by this database user: retrieval is lexical then."""
    if connection.vendor != "postgresql":
        return False
    if not vector_extension_available(connection):
        logger.warning(
            "pgvector is not installed on this PostgreSQL server: course material search is lexical "
            "only. Install the server package (e.g. postgresql-15-pgvector) and run migrate again."
        )
        return False
    try:
        # A savepoint: a refused CREATE EXTENSION must not abort the migration's transaction.
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS vector")
            # Generated from the JSON `embedding`, so the two can never disagree and nothing but
            # the model's own field is ever written. JSON that is not a list of the right size
            # (an admin edit, an old engine) leaves it NULL: that chunk is found by words only.
            cursor.execute(
                f"ALTER TABLE {CHUNK_TABLE} ADD COLUMN IF NOT EXISTS embedding_vector "
                f"vector({EMBEDDING_DIMENSIONS}) GENERATED ALWAYS AS (CASE "
                f"WHEN jsonb_typeof(embedding) = 'array' AND jsonb_array_length(embedding) = {EMBEDDING_DIMENSIONS} "
                f"THEN (embedding::text)::vector({EMBEDDING_DIMENSIONS}) END) STORED"
            )
            cursor.execute(
                f"CREATE INDEX IF NOT EXISTS chunk_embedding_hnsw ON {CHUNK_TABLE} "
                "USING hnsw (embedding_vector vector_cosine_ops)"
            )
    except DatabaseError as exc:
        logger.warning("pgvector could not be enabled (%s): course material search is lexical only.", exc)
        return False
    return True


def vector_index_uninstall(connection: BaseDatabaseWrapper) -> None:
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX IF EXISTS chunk_embedding_hnsw")
        cursor.execute(f"ALTER TABLE {CHUNK_TABLE} DROP COLUMN IF EXISTS embedding_vector")


def vector_column_present(connection: BaseDatabaseWrapper) -> bool:
    """Whether this database has the `embedding_vector` column (pgvector enabled by migrate)."""
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = %s AND column_name = 'embedding_vector'",
            [CHUNK_TABLE],
        )
        return cursor.fetchone() is not None


LEXICAL_MIGRATION = ("courses", "0004_chunk_search_index")


def search_indexes_ensure(connection: BaseDatabaseWrapper) -> None:
    """After every migrate: the lexical index exists and is in sync (see the module docstring)."""
    from django.db.migrations.recorder import MigrationRecorder

    if LEXICAL_MIGRATION in MigrationRecorder(connection).applied_migrations():
        lexical_index_install(connection)


_vector_store: dict[str, bool] = {}


def vector_store_ready(using: str = "default") -> bool:
    """Whether vectors can be stored and searched here (PostgreSQL with the pgvector column);
    looked up once per process and database."""
    from django.db import connections

    if using not in _vector_store:
        _vector_store[using] = vector_column_present(connections[using])
    return _vector_store[using]
