"""What the confusion radar costs a student line (analytics/live.py), in the embedded default
where the eager task runs right after the line's commit, in the thread that wrote it.

A live session of `--rooms` rooms of 5 students on a scratch SQLite database (or DATABASE_URL);
`--lines` student lines (one in four confused, about a scope term) are posted through
`live.room_line_post`, first with the radar disconnected, then connected. The channel layer is
the in-memory one and no socket listens (sends are cheap and equal in both runs); the cache is
the settings' (LocMem, or Redis with REDIS_URL). Also: `radar_snapshot` of a full radar.

    .venv/bin/python bench/radar.py --rooms 6 --lines 600
    DATABASE_URL=postgres://... REDIS_URL=redis://127.0.0.1:6379/8 .venv/bin/python bench/radar.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TEXTS = [
    "I don't get recursion at all",
    "A for loop runs once per item",
    "What does range(3) give?",
    "ok, so the list grows",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def build(rooms: int, tag: str):
    from courses.models import Course, Enrollment, Professor, Student, Tenant, User
    from sessions import orchestration

    tenant, _ = Tenant.objects.get_or_create(slug="bench", defaults={"name": "Bench University"})
    prof_user, _ = User.objects.get_or_create(username="bench-prof", defaults={"tenant": tenant, "role": "professor"})
    professor, _ = Professor.objects.get_or_create(user=prof_user, defaults={"tenant": tenant})
    course = Course.objects.create(
        tenant=tenant, code=f"R-{tag}", title="Bench course", scope_terms=["recursion", "loop", "range", "list"]
    )
    course.professors.add(professor)
    for i in range(rooms * 5):
        user = User.objects.create(username=f"{tag}-s{i}", first_name=f"S{i}", tenant=tenant, role="student")
        Enrollment.objects.create(course=course, student=Student.objects.create(user=user, tenant=tenant))
    session = orchestration.session_create(course=course, professor=professor, title=f"Radar {tag}", room_count=rooms)
    orchestration.session_start(session=session)
    return [
        (room, [a.student.user for a in room.assignments.select_related("student__user")])
        for room in session.rooms.select_related("session").order_by("number")
    ], session


def post_lines(layout, count: int) -> list[float]:
    from sessions import live

    times = []
    for n in range(count):
        room, members = layout[n % len(layout)]
        started = time.perf_counter()
        live.room_line_post(room=room, user=members[n % len(members)], text=TEXTS[n % len(TEXTS)])
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rooms", type=int, default=6)
    parser.add_argument("--lines", type=int, default=600)
    args = parser.parse_args()

    scratch = tempfile.TemporaryDirectory()
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{scratch.name}/bench.sqlite3")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tutor_project.settings")
    os.environ.setdefault("LOG_LEVEL", "ERROR")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    settings.TUTOR_TURNS_PER_MINUTE = 10_000
    settings.ANALYTICS_LIVE_EVERY_LINES = 10_000  # the radar only, not the periodic recomputation
    call_command("migrate", verbosity=0)
    from analytics import live as radar
    from analytics.live import segment_recorded_queue
    from sessions.signals import segment_recorded

    uid = "analytics.segment_recorded_queue"
    layout_off, _ = build(args.rooms, f"off{os.getpid()}")
    segment_recorded.disconnect(dispatch_uid=uid)
    off = post_lines(layout_off, args.lines)
    segment_recorded.connect(segment_recorded_queue, dispatch_uid=uid)
    layout_on, session = build(args.rooms, f"on{os.getpid()}")
    on = post_lines(layout_on, args.lines)
    signals = len(radar.radar_state(session.pk)["signals"])
    snapshots = []
    for _ in range(50):
        started = time.perf_counter()
        radar.radar_snapshot(session_id=session.pk)
        snapshots.append((time.perf_counter() - started) * 1000)

    print(f"database: {connection.vendor}; cache: {settings.CACHES['default']['BACKEND'].rsplit('.', 1)[-1]}; "
          f"{args.rooms} rooms, {args.lines} lines; {signals} signals on the radar")
    print("| | p50 ms | p95 ms | mean ms |")
    print("|---|---|---|---|")
    for name, values in (("line post, radar off", off), ("line post, radar on", on), ("radar_snapshot", snapshots)):
        print(f"| {name} | {percentile(values, .5):.2f} | {percentile(values, .95):.2f} | {statistics.fmean(values):.2f} |")
    print(f"radar cost per line (mean): {statistics.fmean(on) - statistics.fmean(off):.2f} ms")
    scratch.cleanup()


if __name__ == "__main__":
    main()
