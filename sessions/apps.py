from django.apps import AppConfig


class SessionsConfig(AppConfig):
    name = "sessions"
    # `django.contrib.sessions` already owns the label "sessions".
    label = "live_sessions"
    verbose_name = "Live sessions and tutors"

    def ready(self) -> None:
        from sessions import signals  # noqa: F401  closes a deactivated user's sockets
