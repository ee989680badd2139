"""Semantic search storage: on PostgreSQL with the pgvector extension available, enable it and add
`embedding_vector vector(384)` with an HNSW index (cosine). A no-op on SQLite, and on a PostgreSQL
server without pgvector (retrieval stays lexical; run migrate again after installing it:
`manage.py migrate courses 0004 && manage.py migrate courses`)."""

from django.db import migrations


def install(apps, schema_editor):
    from courses.search_schema import vector_index_install

    vector_index_install(schema_editor.connection)


def uninstall(apps, schema_editor):
    from courses.search_schema import vector_index_uninstall

    vector_index_uninstall(schema_editor.connection)


class Migration(migrations.Migration):

    dependencies = [
        ("courses", "0004_chunk_search_index"),
    ]

    operations = [
        migrations.RunPython(install, uninstall, elidable=False),
    ]
