"""Beat schedules: installed after migrate, idempotent, operator edits kept."""

from __future__ import annotations

from io import StringIO

import pytest
from celery import current_app
from django.core.management import call_command
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from analytics.beat import SCHEDULES, beat_schedules_install

pytestmark = pytest.mark.django_db


def test_migrate_installed_every_schedule_for_a_registered_task():
    # The test database was made by `migrate`, whose post_migrate ran the installer.
    import analytics.tasks  # noqa: F401  (what the worker's autodiscovery imports)
    import sessions.tasks  # noqa: F401

    tasks = dict(PeriodicTask.objects.values_list("name", "task"))
    for schedule in SCHEDULES:
        assert tasks[schedule.name] == schedule.task
        assert schedule.task in current_app.tasks, schedule.task
    assert PeriodicTask.objects.get(name="Retention purge").crontab.hour == "2"
    assert PeriodicTask.objects.get(name="Budget check").crontab.minute == "5"
    assert PeriodicTask.objects.get(name="End idle live sessions").interval.every == 5


def test_running_again_changes_nothing():
    before = list(PeriodicTask.objects.order_by("pk").values())
    counts = (CrontabSchedule.objects.count(), IntervalSchedule.objects.count())
    assert set(beat_schedules_install().values()) == {"kept"}
    assert list(PeriodicTask.objects.order_by("pk").values()) == before
    assert (CrontabSchedule.objects.count(), IntervalSchedule.objects.count()) == counts


def test_operator_edits_are_kept_and_the_task_path_is_repaired():
    hourly = CrontabSchedule.objects.create(minute="0", hour="4", timezone="UTC")
    entry = PeriodicTask.objects.get(name="Retention purge")
    entry.crontab, entry.enabled, entry.task = hourly, False, "analytics.old_name"
    entry.save()

    assert beat_schedules_install()["Retention purge"] == "updated"
    entry.refresh_from_db()
    assert (entry.crontab, entry.enabled, entry.task) == (hourly, False, "analytics.retention_purge")


def test_a_deleted_entry_is_created_again_by_the_command():
    PeriodicTask.objects.filter(name="Usage roll-up").delete()
    out = StringIO()
    call_command("beat_install", stdout=out)
    assert "created  Usage roll-up" in out.getvalue()
    assert PeriodicTask.objects.get(name="Usage roll-up").enabled


def test_the_scheduler_is_the_database_one(settings):
    assert settings.CELERY_BEAT_SCHEDULER == "django_celery_beat.schedulers:DatabaseScheduler"
