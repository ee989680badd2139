"""Nightly work at scale: the usage roll-up of one busy day, and the retention purge's time and memory.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/aiprof_bench .venv/bin/python bench/retention.py
    .venv/bin/python bench/retention.py --events 20000 --segments 10000     # SQLite scratch file

The database must exist and be disposable (the script migrates it and adds rows; it deletes its
tenant at the end). Roll-up: --events usage events in one UTC day over 3 tenants x 10 courses x 4
kinds x 2 models, rolled up twice (the second run replaces the first). Purge: expired sessions
with --segments transcript lines in all, one in ten with a small audio file in a scratch
MEDIA_ROOT, purged at two sizes (a fifth, then all): the Python heap peak (tracemalloc) must not
grow with the number of rows, since the purge works in batches of RETENTION_BATCH_SIZE.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def setup_django(workdir: Path) -> None:
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{workdir / 'bench.sqlite3'}")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tutor_project.settings")
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ["DJANGO_MEDIA_ROOT"] = str(workdir / "media")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.conf import settings

    settings.DEBUG = False  # DEBUG keeps every query in a (bounded) log, which tracemalloc would count


def world():
    from courses.models import Course, Professor, Tenant, User

    tenants, courses = [], []
    for n in range(3):
        tenant = Tenant.objects.create(name=f"Bench {n}", slug=f"bench-retention-{n}-{time.time_ns()}", retention_days=30,
                                       keep_audio=True)
        tenants.append(tenant)
        courses += [Course.objects.create(tenant=tenant, code=f"B{n}{c}", title="Bench") for c in range(10)]
    user = User.objects.create(username=f"bench-prof-{time.time_ns()}", tenant=tenants[0], role="professor")
    professor = Professor.objects.create(user=user, tenant=tenants[0])
    return tenants, courses, professor


def bench_rollup(courses, events: int) -> None:
    from analytics.models import UsageEvent
    from analytics.usage import usage_rollup

    day = date(2026, 1, 15)
    start = datetime(2026, 1, 15, tzinfo=UTC)
    kinds = ["llm", "stt", "tts", "embeddings"]
    rows = [
        UsageEvent(
            tenant_id=courses[i % len(courses)].tenant_id, course=courses[i % len(courses)], kind=kinds[i % 4],
            provider="openai", model=f"m{i % 2}", prompt_tokens=100, completion_tokens=20, units=Decimal("1.5"),
            cost=Decimal("0.000150"),
        )
        for i in range(events)
    ]
    UsageEvent.objects.bulk_create(rows, batch_size=5000)
    ids = [r.pk for r in rows] if rows[0].pk else None
    spread = UsageEvent.objects.filter(pk__in=ids) if ids else UsageEvent.objects.filter(course__in=courses)
    spread.update(created_at=start + timedelta(hours=12))
    for attempt in ("first", "again"):
        began = time.perf_counter()
        written = usage_rollup(day=day)
        print(f"roll-up ({attempt}) of {events:,} events: {written} rows in {time.perf_counter() - began:.2f} s")


def bench_purge(tenant, course, professor, segments: int) -> None:
    from django.core.files.storage import default_storage

    from analytics.retention import retention_purge
    from sessions.models import LiveSession, TranscriptSegment

    old = datetime.now(UTC) - timedelta(days=40)

    def load(n: int) -> None:
        per_session = 500
        for s in range(0, n, per_session):
            session = LiveSession.objects.create(
                tenant=tenant, course=course, professor=professor, title="old", status="ended",
                started_at=old - timedelta(hours=1), ended_at=old,
            )
            batch = []
            for i in range(min(per_session, n - s)):
                audio = ""
                if i % 10 == 0:
                    audio = default_storage.save(f"audio/bench/{session.pk}-{i}.wav", _wav())
                batch.append(TranscriptSegment(
                    session=session, seq=i + 1, speaker_kind="student", speaker_name="S", text="a line " * 8,
                    audio=audio,
                ))
            TranscriptSegment.objects.bulk_create(batch, batch_size=1000)

    for size in (segments // 5, segments):
        load(size)
        tracemalloc.start()
        began = time.perf_counter()
        report = retention_purge()
        seconds = time.perf_counter() - began
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(
            f"purge of {report.totals.segments:,} lines, {report.totals.audio_files:,} audio files: "
            f"{seconds:.2f} s, {report.totals.segments / seconds:,.0f} lines/s, Python heap peak {peak / 2**20:.1f} MiB"
        )


def _wav():
    from django.core.files.base import ContentFile

    return ContentFile(b"RIFF" + b"\0" * 1020)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--segments", type=int, default=50_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        setup_django(Path(workdir))
        from django.conf import settings
        from django.db import connection

        print(f"{platform.node()} python {platform.python_version()} {connection.vendor} "
              f"batch={settings.RETENTION_BATCH_SIZE}")
        tenants, courses, professor = world()
        try:
            bench_rollup(courses, args.events)
            bench_purge(tenants[0], courses[0], professor, args.segments)
        finally:
            from analytics.models import UsageDaily
            from courses.models import Tenant
            from sessions.models import LiveSession

            UsageDaily.objects.filter(tenant__in=tenants).delete()
            LiveSession.objects.filter(tenant__in=tenants).delete()
            professor.user.delete()
            Tenant.objects.filter(pk__in=[t.pk for t in tenants]).delete()


if __name__ == "__main__":
    main()
