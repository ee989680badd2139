from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    name = "analytics"
    verbose_name = "Analytics and usage"

    def ready(self) -> None:
        from analytics.receivers import usage_event_record
        from courses.usage import provider_called

        provider_called.connect(usage_event_record, dispatch_uid="analytics.usage_event_record")
