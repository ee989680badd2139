from django.apps import AppConfig


class SessionsConfig(AppConfig):
    name = "sessions"
    # `django.contrib.sessions` already owns the label "sessions".
    label = "live_sessions"
    verbose_name = "Live sessions and tutors"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from sessions import signals  # noqa: F401  closes a deactivated user's sockets
        from sessions.tasks import beat_schedules_ensure

        post_migrate.connect(beat_schedules_ensure, sender=self, dispatch_uid="sessions.beat_schedules")
