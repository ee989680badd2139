from django.apps import AppConfig


class CoursesConfig(AppConfig):
    name = "courses"
    verbose_name = "Courses and people"

    def ready(self) -> None:
        from . import checks  # noqa: F401  registers the configuration checks
