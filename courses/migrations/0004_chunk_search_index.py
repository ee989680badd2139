"""The lexical index of the chunks: a generated tsvector column with a GIN index on PostgreSQL, an
FTS5 table kept in sync by triggers on SQLite (each a no-op on the other database)."""

from django.db import migrations


def install(apps, schema_editor):
    from courses.search_schema import lexical_index_install

    lexical_index_install(schema_editor.connection)


def uninstall(apps, schema_editor):
    from courses.search_schema import lexical_index_uninstall

    lexical_index_uninstall(schema_editor.connection)


class Migration(migrations.Migration):

    dependencies = [
        ("courses", "0003_document_revision"),
    ]

    operations = [
        migrations.RunPython(install, uninstall, elidable=False),
    ]
