"""`manage.py beat_install`: create the project's missing periodic tasks (analytics/beat.py)."""

from django.core.management.base import BaseCommand

from analytics.beat import beat_schedules_install


class Command(BaseCommand):
    help = "Create missing django-celery-beat entries; existing ones keep their schedule and enabled flag."

    def handle(self, *args, **options) -> None:
        for name, outcome in beat_schedules_install().items():
            self.stdout.write(f"{outcome:8} {name}")
