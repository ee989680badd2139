from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    name = "analytics"
    verbose_name = "Analytics and usage"

    def ready(self) -> None:
        from analytics.receivers import usage_event_record
        from courses.usage import provider_called

        provider_called.connect(usage_event_record, dispatch_uid="analytics.usage_event_record")

        from analytics.receivers import session_analytics_queue
        from sessions.signals import session_ended

        session_ended.connect(session_analytics_queue, dispatch_uid="analytics.session_analytics_queue")

        # The live confusion radar (analytics/live.py).
        from analytics.live import confusion_clarified_mark, monitor_snapshot_radar, segment_recorded_queue
        from sessions.signals import confusion_clarified, monitor_snapshot, segment_recorded

        segment_recorded.connect(segment_recorded_queue, dispatch_uid="analytics.segment_recorded_queue")
        confusion_clarified.connect(confusion_clarified_mark, dispatch_uid="analytics.confusion_clarified_mark")
        monitor_snapshot.connect(monitor_snapshot_radar, dispatch_uid="analytics.monitor_snapshot_radar")

        from django.db.models.signals import post_migrate

        from analytics.beat import beat_schedules_post_migrate

        post_migrate.connect(beat_schedules_post_migrate, sender=self, dispatch_uid="analytics.beat_schedules")
