from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _search_indexes_ensure(sender, using: str = "default", **kwargs) -> None:
    from django.db import connections

    from courses.search_schema import search_indexes_ensure

    search_indexes_ensure(connections[using])


class CoursesConfig(AppConfig):
    name = "courses"
    verbose_name = "Courses and people"

    def ready(self) -> None:
        from . import checks  # noqa: F401  registers the configuration checks

        # SQLite rebuilds a table it alters, dropping the FTS triggers: restore them after migrate.
        post_migrate.connect(_search_indexes_ensure, sender=self, dispatch_uid="courses-search-indexes")
