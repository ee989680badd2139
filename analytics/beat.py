"""The periodic work of the whole project, as django-celery-beat rows (DatabaseScheduler).

`beat_schedules_install()` runs after every `migrate` (post_migrate) and from
`manage.py beat_install`. Keyed on the PeriodicTask's name, it creates a missing entry with its
default schedule, enabled; an entry that exists keeps its schedule and `enabled` as an operator
set them in the admin, and only its task path, arguments and description are brought up to date
(so a renamed task keeps working). Running it again changes nothing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Schedule:
    name: str
    task: str
    description: str
    # One of the two: a crontab (UTC) or an interval in minutes.
    crontab: dict[str, str] | None = None
    every_minutes: int | None = None


SCHEDULES = (
    Schedule(
        name="End idle live sessions",  # the same entry sessions.tasks.beat_schedules_ensure makes
        task="sessions.end_idle_sessions",
        description="Ends sessions left live with no activity for SESSION_IDLE_END_MINUTES.",
        every_minutes=5,
    ),
    Schedule(
        name="Usage roll-up",
        task="analytics.usage_rollup",
        description="Sums yesterday's (UTC) usage events into daily usage rows. Idempotent.",
        crontab={"minute": "20", "hour": "0"},
    ),
    Schedule(
        name="Retention purge",
        task="analytics.retention_purge",
        description="Deletes transcripts, messages and audio older than each tenant's retention days.",
        crontab={"minute": "40", "hour": "2"},
    ),
    Schedule(
        name="Budget check",
        task="analytics.budget_check",
        description="Mails tenant staff at 80 % and 100 % of the monthly budget, once each per month.",
        crontab={"minute": "5", "hour": "*"},
    ),
)


def _schedule_fields(schedule: Schedule) -> dict[str, Any]:
    from django_celery_beat.models import CrontabSchedule, IntervalSchedule

    if schedule.every_minutes is not None:
        interval, _ = IntervalSchedule.objects.get_or_create(
            every=schedule.every_minutes, period=IntervalSchedule.MINUTES
        )
        return {"interval": interval}
    spec = {"minute": "*", "hour": "*", "day_of_month": "*", "month_of_year": "*", "day_of_week": "*"}
    spec.update(schedule.crontab or {})
    crontab = CrontabSchedule.objects.filter(**spec, timezone="UTC").first()
    if crontab is None:
        crontab = CrontabSchedule.objects.create(**spec, timezone="UTC")
    return {"crontab": crontab}


def beat_schedules_install() -> dict[str, str]:
    """Create the missing periodic tasks; update task/args of existing ones. Name -> "created" or
    "kept" (existing, schedule and enabled untouched) or "updated" (task path or args changed)."""
    from django_celery_beat.models import PeriodicTask

    outcome: dict[str, str] = {}
    for schedule in SCHEDULES:
        managed = {"task": schedule.task, "args": json.dumps([]), "kwargs": json.dumps({}),
                   "description": schedule.description}
        existing = PeriodicTask.objects.filter(name=schedule.name).first()
        if existing is None:
            PeriodicTask.objects.create(name=schedule.name, enabled=True, **managed, **_schedule_fields(schedule))
            outcome[schedule.name] = "created"
            continue
        changed = [f for f, value in managed.items() if getattr(existing, f) != value]
        if changed:
            for f in changed:
                setattr(existing, f, managed[f])
            existing.save(update_fields=changed)
        outcome[schedule.name] = "updated" if changed else "kept"
    logger.info("beat schedules: %s", outcome)
    return outcome


def beat_schedules_post_migrate(sender=None, **kwargs) -> None:
    """post_migrate receiver. Skipped when the beat tables are not migrated (e.g. `migrate app 0001`)."""
    from django.db import DatabaseError, connection

    try:
        tables = set(connection.introspection.table_names())
    except DatabaseError:  # pragma: no cover
        return
    if {"django_celery_beat_periodictask", "django_celery_beat_crontabschedule"} <= tables:
        beat_schedules_install()
