"""Server-added latency of a tutor turn: a student's `chat.message` to the first `tutor.delta`.

The model is the local OpenAI stand-in (tests/support/openai_standin.py) answering instantly, so
what is measured is our path: persist the question, prepare the context (history, retrieval,
prompts, chain), the guardrail, the chain's call through the openai SDK, the delta's trip through
the channel layer to the socket. The baseline, measured in the same run, is the bare SDK call:
AsyncOpenAI streaming from the same stand-in to its first chunk. server-added = turn - baseline.

    .venv/bin/python bench/tutor_turn.py --turns 200
    REDIS_URL=redis://127.0.0.1:6379/5 .venv/bin/python bench/tutor_turn.py   # pub/sub layer

The turns run through the real ASGI application (`WebsocketCommunicator`, in process) on a
scratch SQLite database, or DATABASE_URL when set. Results go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUESTIONS = [
    "How does a for loop know when to stop?",
    "What is the difference between a list and a dictionary?",
    "Why does my recursive function never end?",
    "What does return do in a function?",
    "How do I read a traceback?",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"{name:<28} n={len(ms):<4} p50={percentile(ms, 0.5):7.2f} ms  p95={percentile(ms, 0.95):7.2f} ms  "
        f"p99={percentile(ms, 0.99):7.2f} ms  mean={statistics.fmean(ms):7.2f} ms"
    )


async def baseline(base_url: str, turns: int) -> list[float]:
    """The stand-in's own first-chunk latency through the SDK: what no server can avoid."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(api_key="sk-bench", base_url=base_url, max_retries=0)
    times = []
    for n in range(turns):
        started = time.perf_counter()
        stream = await client.chat.completions.create(
            model="bench-model", stream=True,
            messages=[{"role": "user", "content": QUESTIONS[n % len(QUESTIONS)]}],
        )
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                times.append(time.perf_counter() - started)
                break
        await stream.close()
    await client.close()
    return times


async def turns_over_socket(conversation_id: int, user, turns: int) -> list[float]:
    from channels.db import database_sync_to_async
    from channels.testing import WebsocketCommunicator
    from django.test import Client

    from tutor_project.asgi import application

    def cookie() -> bytes:
        client = Client()
        client.force_login(user)
        return f"sessionid={client.cookies['sessionid'].value}".encode()

    headers = [(b"origin", b"http://testserver"), (b"cookie", await database_sync_to_async(cookie)())]
    comm = WebsocketCommunicator(application, f"/ws/conversations/{conversation_id}/", headers=headers)
    connected, _ = await comm.connect(timeout=10)
    assert connected
    await comm.receive_from(5)  # conversation.status
    times = []
    for n in range(turns):
        started = time.perf_counter()
        await comm.send_to(text_data=json.dumps({"type": "chat.message", "text": QUESTIONS[n % len(QUESTIONS)]}))
        first = None
        while True:
            message = json.loads(await comm.receive_from(10))
            if message["type"] == "tutor.delta" and first is None:
                first = time.perf_counter() - started
            elif message["type"] == "error":
                raise RuntimeError(message)
            elif message["type"] == "tutor.message":
                if message["data"]["offline"]:
                    raise RuntimeError("the offline tutor answered: the stand-in chain is not in use")
                break
        times.append(first)
    await comm.disconnect()
    return times


def setup_django(workdir: Path) -> None:
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{workdir / 'bench.sqlite3'}")
    os.environ["DJANGO_SETTINGS_MODULE"] = "tutor_project.settings"
    os.environ["TUTOR_TURNS_PER_MINUTE"] = "0"
    os.environ["WS_MAX_MESSAGES_PER_SECOND"] = "0"  # one client asking 200 questions in a row
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ["DJANGO_MEDIA_ROOT"] = str(workdir / "media")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        setup_django(Path(tmp))
        from django.conf import settings

        from courses.models import Course, Student
        from courses.services import demo_seed
        from sessions.models import Conversation, LLMModel
        from tests.support.openai_standin import OpenAIStandin, Reply

        demo_seed()
        course = Course.objects.get(code="CS101")
        student = Student.objects.select_related("user").get(user__username="student1")
        with OpenAIStandin() as standin:
            standin.default = Reply("A good question. What do you already know about it?")
            os.environ["BENCH_LLM_BASE_URL"] = standin.base_url
            os.environ["BENCH_LLM_API_KEY"] = "sk-bench"
            LLMModel.objects.create(
                tenant=course.tenant, position=1, provider="openai", model_name="bench-model",
                base_url_setting="BENCH_LLM_BASE_URL", api_key_setting="BENCH_LLM_API_KEY",
            )
            conversation = Conversation.objects.create(
                tenant=course.tenant, course=course, student=student, mode="socratic"
            )
            layer = settings.CHANNEL_LAYERS["default"]["BACKEND"].rsplit(".", 1)[-1]
            database = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]

            async def run() -> tuple[list[float], list[float]]:
                await baseline(standin.base_url, args.warmup)
                base = await baseline(standin.base_url, args.turns)
                await turns_over_socket(conversation.pk, student.user, args.warmup)
                ours = await turns_over_socket(conversation.pk, student.user, args.turns)
                return base, ours

            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # setup above ran in this thread
            base, ours = asyncio.run(run())

    print(f"tutor turn bench: {args.turns} turns, database={database}, channel layer={layer}")
    print(summary("baseline (SDK -> stand-in)", base))
    print(summary("chat.message -> tutor.delta", ours))
    added = [max(0.0, o - percentile(base, 0.5)) for o in ours]
    print(summary("server-added (minus base p50)", added))
    print(f"ratio p50 turn / baseline: {percentile(ours, 0.5) / percentile(base, 0.5):.1f}x")


if __name__ == "__main__":
    main()
