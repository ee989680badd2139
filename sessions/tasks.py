"""Celery tasks of the sessions app (scheduled by django-celery-beat; see `beat_schedules_ensure`)."""

from __future__ import annotations

from celery import shared_task

from sessions.orchestration import sessions_end_idle


@shared_task(name="sessions.end_idle_sessions", acks_late=True, ignore_result=True)
def end_idle_sessions() -> list[int]:
    """End sessions left live with no activity for SESSION_IDLE_END_MINUTES. Idempotent."""
    return sessions_end_idle()


IDLE_CHECK_EVERY_MINUTES = 5


def beat_schedules_ensure(sender=None, **kwargs) -> None:
    """The sessions app's beat schedules, created once after `migrate` (post_migrate). An
    existing entry is left as staff edited it in the admin (interval, enabled)."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    every, _ = IntervalSchedule.objects.get_or_create(
        every=IDLE_CHECK_EVERY_MINUTES, period=IntervalSchedule.MINUTES
    )
    PeriodicTask.objects.get_or_create(
        name="End idle live sessions",
        defaults={"task": "sessions.end_idle_sessions", "interval": every, "enabled": True,
                  "description": "Ends sessions left live with no activity for SESSION_IDLE_END_MINUTES."},
    )
