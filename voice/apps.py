from django.apps import AppConfig


class VoiceConfig(AppConfig):
    name = "voice"
    verbose_name = "Voice"

    def ready(self) -> None:
        from . import checks  # noqa: F401  registers the configuration checks
