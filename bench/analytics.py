"""Time of a session's analytics computation, and how it grows with the transcript.

A 60-minute session with 30 students in 6 rooms is built on a scratch SQLite database (or
DATABASE_URL): about one line per student per minute (text and speech, questions, explanations,
confusion, small talk) and a tutor reply after most student lines (some of them off-topic
redirects). `session_analytics_compute` is timed on it (final=True: the summary is the extractive
one, no model is configured; and final=False, the incremental run), then on the same class with
the transcript 2x and 4x as long. Baseline in the same run: reading the segments alone (the
computation's one large query). The growth ratios should stay near 2 and 4 (linear).

    .venv/bin/python bench/analytics.py
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/aiprof_bench .venv/bin/python bench/analytics.py --runs 5
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STUDENT_LINES = [
    "How does a for loop know when to stop?",
    "I don't get recursion, why does it not run forever?",
    "A variable is a name for a value, so when you assign again the name points to the new value.",
    "Wait, no, I mean the function returns None when there is no return statement.",
    "Can you show an example of a while loop?",
    "I think recursion needs a base case because otherwise the calls never end and the stack overflows.",
    "ok",
    "Actually the loop runs five times because range stops before the end value.",
    "What is the difference between a function and a method?",
    "I'm confused about variable scope inside a function.",
    "Did anyone watch the game last night?",
    "So python lists are mutable, that means a function can change the list you pass in.",
    "yes",
    "Why do we need functions at all?",
]
TUTOR_LINES = [
    "Good question. Think about what the loop condition checks each time.",
    "Try tracing it by hand with a small input: what happens first?",
    "Exactly, well done.",
    "Remember the base case: when does the recursion stop?",
    "What would happen if the variable were defined outside the function?",
    "Let's keep to the course: how would you write that as a loop?",
]


def build(*, students: int, rooms: int, minutes: int, tag: str, seed: int = 7):
    from analytics.models import SessionAnalytics
    from courses.models import Course, Enrollment, Professor, Student, Tenant, User
    from sessions.models import (
        BreakoutRoom,
        Conversation,
        LiveSession,
        Message,
        RoomAssignment,
        TranscriptSegment,
    )

    rng = random.Random(seed)
    tenant, _ = Tenant.objects.get_or_create(slug="bench", defaults={"name": "Bench University"})
    prof_user, _ = User.objects.get_or_create(username="bench-prof", defaults={"tenant": tenant, "role": "professor"})
    professor, _ = Professor.objects.get_or_create(user=prof_user, defaults={"tenant": tenant})
    course = Course.objects.create(
        tenant=tenant, code=f"B-{tag}", title="Bench course",
        scope_terms=["python", "variable", "loop", "function", "recursion"],
    )
    course.professors.add(professor)
    session = LiveSession.objects.create(
        tenant=tenant, course=course, professor=professor, title=f"Bench {tag}", status="ended", room_count=rooms
    )
    room_rows = [
        BreakoutRoom.objects.create(session=session, number=n + 1, name=f"Room {n + 1}", topic=["loop", "recursion"][n % 2])
        for n in range(rooms)
    ]
    conversations = {
        room.pk: Conversation.objects.create(tenant=tenant, course=course, session=session, room=room)
        for room in room_rows
    }
    members: dict[int, list] = {room.pk: [] for room in room_rows}
    for i in range(students):
        user = User.objects.create(username=f"{tag}-s{i}", first_name=f"S{i}", tenant=tenant, role="student")
        student = Student.objects.create(user=user, tenant=tenant)
        Enrollment.objects.create(course=course, student=student)
        room = room_rows[i % rooms]
        RoomAssignment.objects.create(session=session, room=room, student=student)
        members[room.pk].append(user)

    seq = 0
    segments, messages = [], []
    for minute in range(minutes):
        for room in room_rows:
            for user in members[room.pk]:
                if rng.random() < 0.1:  # now and then a student stays quiet for a minute
                    continue
                seq += 1
                at = minute * 60_000 + rng.randrange(0, 55_000)
                speech = rng.random() < 0.5
                segments.append(TranscriptSegment(
                    session=session, room=room, seq=seq, speaker_kind="student", speaker_user=user,
                    speaker_name=user.first_name, text=rng.choice(STUDENT_LINES),
                    source="speech" if speech else "text", start_ms=at, end_ms=at + (rng.randrange(1500, 8000) if speech else 0),
                ))
                if rng.random() < 0.6:
                    seq += 1
                    text = rng.choice(TUTOR_LINES)
                    message = Message(
                        conversation=conversations[room.pk], seq=seq, role="tutor", text=text,
                        guardrail="off_topic" if text.startswith("Let's keep") else "on_topic",
                    )
                    messages.append(message)
                    segments.append(TranscriptSegment(
                        session=session, room=room, seq=seq, speaker_kind="tutor", speaker_name="Tutor",
                        text=text, start_ms=at + 1000, end_ms=at + 1000, message=message,
                    ))
    Message.objects.bulk_create(messages, batch_size=1000)
    TranscriptSegment.objects.bulk_create(segments, batch_size=1000)
    LiveSession.objects.filter(pk=session.pk).update(last_seq=seq)
    SessionAnalytics.objects.filter(session=session).delete()
    return session, seq


def timed(fn, runs: int) -> tuple[float, float]:
    """Median wall and CPU (this process) milliseconds; CPU time is steadier on a shared machine."""
    fn()  # warm: first rows created, regexes compiled
    wall, cpu = [], []
    for _ in range(runs):
        started, started_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return statistics.median(wall) * 1000, statistics.median(cpu) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--rooms", type=int, default=6)
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    scratch = tempfile.TemporaryDirectory()
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{scratch.name}/bench.sqlite3")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tutor_project.settings")
    os.environ.setdefault("LOG_LEVEL", "ERROR")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    from analytics.services import session_analytics_compute
    from sessions.models import TranscriptSegment

    rows = []
    for factor in (1, 2, 4):
        session, lines = build(
            students=args.students, rooms=args.rooms, minutes=args.minutes * factor, tag=f"x{factor}-{os.getpid()}"
        )

        def read(session_id=session.pk):
            list(TranscriptSegment.objects.filter(session_id=session_id, is_final=True).values_list(
                "seq", "room_id", "speaker_kind", "speaker_user_id", "text", "source", "start_ms", "end_ms",
                "message__guardrail",
            ))

        final = timed(lambda session_id=session.pk: session_analytics_compute(session_id=session_id), args.runs)
        partial = timed(
            lambda session_id=session.pk: session_analytics_compute(session_id=session_id, final=False), args.runs
        )
        baseline = timed(read, args.runs)
        rows.append((factor, lines, final, partial, baseline))

    print(
        f"database: {connection.vendor}; {args.students} students in {args.rooms} rooms; "
        f"{args.minutes} min at 1x; median of {args.runs} runs; wall / CPU ms"
    )
    print("| transcript | lines | compute final | compute incremental | read segments (baseline) | growth final (CPU) | growth incremental (CPU) |")
    print("|---|---|---|---|---|---|---|")
    for factor, lines, final, partial, baseline in rows:
        print(
            f"| {factor}x | {lines} | {final[0]:.0f} / {final[1]:.0f} | {partial[0]:.0f} / {partial[1]:.0f} | "
            f"{baseline[0]:.0f} / {baseline[1]:.0f} | {final[1] / rows[0][2][1]:.2f}x | {partial[1] / rows[0][3][1]:.2f}x |"
        )
    scratch.cleanup()


if __name__ == "__main__":
    main()
