"""What the LLM refinement (analytics/refine.py) adds to a final analytics run, and what it sends.

The 60-minute class of bench/analytics.py (30 students in 6 rooms) is built on a scratch SQLite
database (or DATABASE_URL). A model entry points at the local OpenAI stand-in
(tests/support/openai_standin.py), which answers every classification instantly with valid JSON
for each numbered line (a few marked "stuck") and the summary with a short text. Timed, median of
--runs: `session_analytics_compute(final=True)` with the model (summary + refinement) and with
the refinement off (ANALYTICS_REFINE_MAX_LINES=0; summary only): the difference is the
refinement's own server-side cost (prompts, parsing, merge, usage rows) plus the stand-in's
loopback round trips; a real model's latency comes on top. Also printed: model calls, lines sent,
prompt characters and estimated tokens per call (characters / 4), confusion points added.

    .venv/bin/python bench/analytics_refine.py
    .venv/bin/python bench/analytics_refine.py --max-lines 2000 --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--rooms", type=int, default=6)
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-lines", type=int, default=600, help="ANALYTICS_REFINE_MAX_LINES")
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

    call_command("migrate", verbosity=0)
    from analytics.services import session_analytics_compute
    from bench.analytics import build, timed
    from sessions.models import LLMModel
    from tests.support.openai_standin import OpenAIStandin, Reply

    def respond(body: dict) -> Reply:
        prompt = body["messages"][0]["content"]
        if "You classify what students said" not in prompt:
            return Reply("1. Topics covered: loops and recursion.")
        seqs = [int(s) for s in re.findall(r"^#(\d+) ", prompt, re.MULTILINE)]
        lines = [{"seq": s, "topic": "loop" if s % 3 else "recursion", "confusion": "stuck" if s % 7 == 0 else None}
                 for s in seqs]
        return Reply(json.dumps({"lines": lines}), completion_tokens=12 * len(lines))

    with OpenAIStandin() as standin:
        standin.responder = respond
        settings.OPENAI_BASE_URL, settings.OPENAI_API_KEY = standin.base_url, "sk-bench"
        session, lines = build(students=args.students, rooms=args.rooms, minutes=args.minutes, tag=f"r-{os.getpid()}")
        LLMModel.objects.create(tenant=session.tenant, position=1, provider="openai", model_name="bench-model")

        def run(max_lines: int):
            settings.ANALYTICS_REFINE_MAX_LINES = max_lines
            return session_analytics_compute(session_id=session.pk)

        with_refine = timed(lambda: run(args.max_lines), args.runs)
        without = timed(lambda: run(0), args.runs)
        standin.requests.clear()
        analytics = run(args.max_lines)
        prompts = [r["json"]["messages"][0]["content"] for r in standin.requests]
        prompts = [p for p in prompts if "You classify what students said" in p]
        report = analytics.participation["refine"]

    sizes = [len(p) for p in prompts] or [0]
    print(f"database: {connection.vendor}; {args.students} students in {args.rooms} rooms, {args.minutes} min, "
          f"{lines} lines; ANALYTICS_REFINE_MAX_LINES={args.max_lines}; median of {args.runs} runs, wall / CPU ms")
    print("| final run | wall / CPU ms | model calls | lines sent | prompt chars a call (median, max) | "
          "est. prompt tokens in all | confusion points added |")
    print("|---|---|---|---|---|---|---|")
    print(f"| summary only (refinement off) | {without[0]:.0f} / {without[1]:.0f} | 1 | 0 | - | - | 0 |")
    print(
        f"| summary + refinement | {with_refine[0]:.0f} / {with_refine[1]:.0f} | {1 + report['batches']} | "
        f"{report['lines']} | {statistics.median(sizes):.0f}, {max(sizes)} | {sum(sizes) // 4} | "
        f"{report['confusion_added']} |"
    )
    print(f"refinement adds {with_refine[0] - without[0]:.0f} ms wall / {with_refine[1] - without[1]:.0f} ms CPU "
          f"({report['batches']} calls, {(with_refine[0] - without[0]) / max(1, report['batches']):.1f} ms wall a call)")
    scratch.cleanup()


if __name__ == "__main__":
    main()
