"""Render time of the professor's monitor page at 2 and 50 rooms (DESIGN: under 100 ms at 50).

A live session with `--rooms` rooms of 5 students, each room with a transcript of tutor and
student lines, is built on a scratch SQLite database (or DATABASE_URL). The page is fetched
through Django's test client (the whole middleware stack and template rendering, no network). Query counts are asserted in
tests (tests/portal/test_session_pages.py), not here.
Baseline in the same run: the same page for a 2-room session, and the course page.

    .venv/bin/python bench/monitor_page.py --rooms 50 --runs 50
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/aiprof_bench .venv/bin/python bench/monitor_page.py
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def build(rooms: int, lines_per_room: int, tag: str):
    from courses.models import Course, Enrollment, Professor, Student, Tenant, User
    from sessions import live, orchestration

    tenant, _ = Tenant.objects.get_or_create(slug="bench", defaults={"name": "Bench University"})
    prof_user, _ = User.objects.get_or_create(username="bench-prof", defaults={"tenant": tenant, "role": "professor"})
    professor, _ = Professor.objects.get_or_create(user=prof_user, defaults={"tenant": tenant})
    course = Course.objects.create(tenant=tenant, code=f"B-{tag}", title="Bench course")
    course.professors.add(professor)
    for i in range(rooms * 5):
        user = User.objects.create(username=f"{tag}-s{i}", first_name=f"S{i}", tenant=tenant, role="student")
        Enrollment.objects.create(course=course, student=Student.objects.create(user=user, tenant=tenant))
    session = orchestration.session_create(course=course, professor=professor, title=f"Bench {tag}", room_count=rooms)
    orchestration.session_start(session=session)
    for room in session.rooms.all():
        members = [a.student.user for a in room.assignments.select_related("student__user")]
        for n in range(lines_per_room):
            live.room_line_post(room=room, user=members[n % len(members)], text=f"Line {n}: how does a for loop stop?")
    return prof_user, session, course


def timed(client, url: str, runs: int) -> list[float]:
    client.get(url)  # warm caches, compile templates
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(url)
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, response.status_code
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rooms", type=int, default=50)
    parser.add_argument("--lines", type=int, default=12, help="transcript lines per room")
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()

    scratch = tempfile.TemporaryDirectory()
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{scratch.name}/bench.sqlite3")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tutor_project.settings")
    os.environ["DJANGO_DEBUG"] = "1"
    os.environ.setdefault("LOG_LEVEL", "ERROR")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    settings.ALLOWED_HOSTS = ["testserver", *settings.ALLOWED_HOSTS]
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    call_command("migrate", verbosity=0)
    from sessions.models import LLMModel

    LLMModel.objects.get_or_create(
        tenant=None, position=1,
        defaults={"provider": "offline", "model_name": "offline-socratic", "base_url_setting": "", "api_key_setting": ""},
    )
    user, big, course = build(args.rooms, args.lines, f"big{os.getpid()}")
    _user, small, _ = build(2, args.lines, f"small{os.getpid()}")
    client = Client()
    client.force_login(user)
    # As tutor_project/asgi.py does once the application is loaded.
    gc.collect()
    gc.freeze()

    rows = []
    for name, url in (
        (f"monitor, {args.rooms} rooms", f"/sessions/{big.pk}/monitor/"),
        ("monitor, 2 rooms", f"/sessions/{small.pk}/monitor/"),
        ("course page", f"/courses/{course.pk}/"),
    ):
        ms = [t * 1000 for t in timed(client, url, args.runs)]
        rows.append((name, percentile(ms, 0.5), percentile(ms, 0.95), statistics.fmean(ms)))
    print(f"database: {connection.vendor}; {args.runs} runs each; {args.lines} lines per room; 5 students per room")
    print("| page | p50 ms | p95 ms | mean ms |")
    print("|---|---|---|---|")
    for name, p50, p95, mean in rows:
        print(f"| {name} | {p50:.1f} | {p95:.1f} | {mean:.1f} |")
    print(f"ratio {args.rooms} rooms / 2 rooms (p50): {rows[0][1] / rows[1][1]:.2f}x; target: under 100 ms at 50 rooms")
    scratch.cleanup()


if __name__ == "__main__":
    main()
