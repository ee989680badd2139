"""`manage.py retention_purge [--dry-run]`: apply every tenant's retention now (analytics/retention.py)."""

from django.core.management.base import BaseCommand

from analytics.retention import retention_purge


class Command(BaseCommand):
    help = "Delete transcripts, messages and audio older than each tenant's retention days."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Count what would be deleted; delete nothing.")

    def handle(self, *args, dry_run: bool = False, **options) -> None:
        report = retention_purge(dry_run=dry_run)
        verb = "would delete" if dry_run else "deleted"
        for tenant_id, counts in report.tenants.items():
            self.stdout.write(
                f"tenant {tenant_id}: {verb} {counts.segments} lines, {counts.messages} messages, "
                f"{counts.conversations} conversations, {counts.audio_files} audio files"
            )
