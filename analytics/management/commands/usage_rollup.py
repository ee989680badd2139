"""`manage.py usage_rollup [--day YYYY-MM-DD | --days N]`: (re)compute daily usage rows."""

from datetime import date, timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from analytics.usage import usage_rollup


class Command(BaseCommand):
    help = "Recompute UsageDaily rows from UsageEvents: one day (default yesterday, UTC) or the last N days."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--day", help="A UTC day, YYYY-MM-DD.")
        parser.add_argument("--days", type=int, default=0, help="Backfill the last N finished days.")

    def handle(self, *args, day: str | None = None, days: int = 0, **options) -> None:
        if day and days:
            raise CommandError("Give --day or --days, not both.")
        if days < 0 or days > 3660:
            raise CommandError("--days is between 1 and 3660.")
        if day:
            try:
                days_to_do = [date.fromisoformat(day)]
            except ValueError as error:
                raise CommandError(f"--day must look like 2026-11-19 ({error}).") from error
        else:
            today = timezone.now().date()
            days_to_do = [today - timedelta(days=n) for n in range(max(days, 1), 0, -1)]
        for one in days_to_do:
            self.stdout.write(f"{one}: {usage_rollup(day=one)} rows")
